package deploy_test

import (
	"encoding/json"
	"errors"
	"fmt"
	"testing"

	"github.com/cilium/cilium/pkg/k8s/apis/cilium.io/client/crds/v2"
	"github.com/cilium/cilium/pkg/policy/api"
	"github.com/stretchr/testify/require"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/kube-openapi/pkg/validation/spec"
	"k8s.io/kube-openapi/pkg/validation/strfmt"
	"k8s.io/kube-openapi/pkg/validation/validate"
	"sigs.k8s.io/yaml"
)

// ciliumNetworkPolicy is a cilium.io/v2 CiliumNetworkPolicy built from
// Cilium's own rule type (pkg/policy/api). It stands in for the type of
// pkg/k8s/apis/cilium.io/v2, which imports Cilium's load balancer and with
// it github.com/cilium/statedb v0.8.4, a module version the Go module proxy
// does not serve.
type ciliumNetworkPolicy struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata"`
	Spec              *api.Rule `json:"spec,omitempty"`
	Specs             api.Rules `json:"specs,omitempty"`
}

// validateCNP checks a policy the way Cilium does before it enforces one:
// against the OpenAPI schema of Cilium's CiliumNetworkPolicy CRD, as the
// API server does (the check of `cilium preflight validate-cnp`), then with
// the rule's own Sanitize, as the agent's parser does (CiliumNetworkPolicy.
// Parse). raw is the object as kustomize built it.
func validateCNP(t *testing.T, raw map[string]any, cnp *ciliumNetworkPolicy) error {
	t.Helper()
	schema := cnpSchema(t)
	if res := validate.NewSchemaValidator(schema, nil, "", strfmt.Default).Validate(raw); !res.IsValid() {
		return fmt.Errorf("CRD schema: %w", errors.Join(res.Errors...))
	}
	if cnp.Name == "" {
		return errors.New("CiliumNetworkPolicy must have a name")
	}
	rules := cnp.Specs
	if cnp.Spec != nil {
		rules = append(api.Rules{cnp.Spec}, rules...)
	}
	if len(rules) == 0 {
		return errors.New("CiliumNetworkPolicy has neither spec nor specs")
	}
	for _, r := range rules {
		// Sanitize fills in defaults: it gets a copy.
		r = r.DeepCopy()
		if err := r.Sanitize(); err != nil {
			return fmt.Errorf("invalid CiliumNetworkPolicy spec: %w", err)
		}
		if r.NodeSelector.LabelSelector != nil {
			return errors.New("invalid CiliumNetworkPolicy spec: rule cannot have NodeSelector")
		}
	}
	return nil
}

// cnpSchema returns the OpenAPI v3 schema of the CiliumNetworkPolicy CRD
// that this Cilium version installs.
func cnpSchema(t *testing.T) *spec.Schema {
	t.Helper()
	b, err := v2.EmbedFS.ReadFile("ciliumnetworkpolicies.yaml")
	require.NoError(t, err)
	var crd struct {
		Spec struct {
			Versions []struct {
				Name   string `json:"name"`
				Schema struct {
					OpenAPIV3Schema json.RawMessage `json:"openAPIV3Schema"`
				} `json:"schema"`
			} `json:"versions"`
		} `json:"spec"`
	}
	require.NoError(t, yaml.Unmarshal(b, &crd))
	for _, v := range crd.Spec.Versions {
		if v.Name == "v2" {
			s := &spec.Schema{}
			require.NoError(t, json.Unmarshal(v.Schema.OpenAPIV3Schema, s))
			return s
		}
	}
	t.Fatal("the CiliumNetworkPolicy CRD has no version v2")
	return nil
}
