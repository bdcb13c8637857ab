package detector

// Hooks for the black-box tests in detector_test.

// TunnelShaped and RegistrableDomain expose the DNS tunnel name rule.
var (
	TunnelShaped      = tunnelShaped
	RegistrableDomain = registrableDomain
)
