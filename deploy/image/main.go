// Command image builds egressd's container image without a Docker daemon
// (`make image`). The image is FROM scratch with one layer: the static
// binary /egressd, CA certificates (for TLS to Hubble, PostgreSQL,
// Alertmanager and Prometheus), a passwd and group naming the non-root user
// 65532, which the image runs as, and /tmp. There is no shell and no
// package manager. The result is a `docker save` style tarball that
// `docker load`, `podman load`, `crane push` and
// `skopeo copy docker-archive:...` read. The same inputs give the same
// bytes: every time in the image is the Unix epoch.
//
// It uses github.com/google/go-containerregistry, the library behind ko and
// crane, rather than writing the image format by hand.
package main

import (
	"archive/tar"
	"bytes"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"runtime"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
)

// Options describe the image.
type Options struct {
	Binary  string // the static egressd binary
	CA      string // the CA certificates bundle
	Arch    string // GOARCH of the binary
	Version string
	Commit  string
}

// User is the image's user and group: distroless' "nonroot".
const User = "65532:65532"

// Build returns the image.
func Build(o Options) (v1.Image, error) {
	bin, err := os.ReadFile(o.Binary)
	if err != nil {
		return nil, fmt.Errorf("--binary: %w", err)
	}
	if !bytes.HasPrefix(bin, []byte("\x7fELF")) {
		return nil, fmt.Errorf("--binary %s: not a Linux (ELF) executable", o.Binary)
	}
	ca, err := os.ReadFile(o.CA)
	if err != nil {
		return nil, fmt.Errorf("--ca: %w (Debian: apt-get install ca-certificates)", err)
	}
	layer, err := layerOf([]entry{
		{name: "etc/", mode: 0o755},
		{name: "etc/group", mode: 0o644, data: []byte("root:x:0:\nnonroot:x:65532:\n")},
		{name: "etc/passwd", mode: 0o644, data: []byte("root:x:0:0:root:/root:/sbin/nologin\nnonroot:x:65532:65532:nonroot:/home/nonroot:/sbin/nologin\n")},
		{name: "etc/ssl/", mode: 0o755},
		{name: "etc/ssl/certs/", mode: 0o755},
		{name: "etc/ssl/certs/ca-certificates.crt", mode: 0o644, data: ca},
		{name: "egressd", mode: 0o755, data: bin},
		{name: "home/", mode: 0o755},
		{name: "home/nonroot/", mode: 0o700, uid: 65532},
		{name: "tmp/", mode: 0o1777},
	})
	if err != nil {
		return nil, err
	}
	img, err := mutate.AppendLayers(empty.Image, layer)
	if err != nil {
		return nil, err
	}
	cf, err := img.ConfigFile()
	if err != nil {
		return nil, err
	}
	cf = cf.DeepCopy()
	cf.OS, cf.Architecture = "linux", o.Arch
	cf.Created = v1.Time{Time: time.Unix(0, 0).UTC()}
	cf.Config = v1.Config{
		User:       User,
		Entrypoint: []string{"/egressd"},
		Cmd:        []string{"serve"},
		WorkingDir: "/",
		Env:        []string{"SSL_CERT_FILE=/etc/ssl/certs/ca-certificates.crt"},
		// /metrics, /healthz, /readyz and the HTTP API (serve --listen).
		ExposedPorts: map[string]struct{}{"9090/tcp": {}},
		Labels: map[string]string{
			"org.opencontainers.image.title":    "egressd",
			"org.opencontainers.image.version":  o.Version,
			"org.opencontainers.image.revision": o.Commit,
		},
	}
	return mutate.ConfigFile(img, cf)
}

type entry struct {
	name string
	mode int64
	uid  int
	data []byte
}

// layerOf returns a layer holding entries, in that order, owned by root
// (unless uid says otherwise), dated at the epoch.
func layerOf(entries []entry) (v1.Layer, error) {
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for _, e := range entries {
		h := &tar.Header{Name: e.name, Mode: e.mode, Uid: e.uid, Gid: e.uid, ModTime: time.Unix(0, 0), Format: tar.FormatPAX}
		if e.name[len(e.name)-1] == '/' {
			h.Typeflag = tar.TypeDir
		} else {
			h.Typeflag, h.Size = tar.TypeReg, int64(len(e.data))
		}
		if err := tw.WriteHeader(h); err != nil {
			return nil, err
		}
		if _, err := tw.Write(e.data); err != nil {
			return nil, err
		}
	}
	if err := tw.Close(); err != nil {
		return nil, err
	}
	b := buf.Bytes()
	return tarball.LayerFromOpener(func() (io.ReadCloser, error) {
		return io.NopCloser(bytes.NewReader(b)), nil
	})
}

func main() {
	o := Options{}
	fs := flag.NewFlagSet("image", flag.ContinueOnError)
	fs.StringVar(&o.Binary, "binary", "", "the static egressd binary (CGO_ENABLED=0 GOOS=linux)")
	fs.StringVar(&o.CA, "ca", "/etc/ssl/certs/ca-certificates.crt", "CA certificates bundle to include")
	fs.StringVar(&o.Arch, "arch", runtime.GOARCH, "GOARCH the binary was built for")
	fs.StringVar(&o.Version, "version", "dev", "version label")
	fs.StringVar(&o.Commit, "commit", "", "commit label")
	tag := fs.String("tag", "egressd:dev", "the image's name and tag in the tarball")
	out := fs.String("out", "", "the tarball to write")
	if err := fs.Parse(os.Args[1:]); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			os.Exit(0)
		}
		os.Exit(2)
	}
	if err := run(o, *tag, *out); err != nil {
		fmt.Fprintln(os.Stderr, "image:", err)
		os.Exit(1)
	}
}

func run(o Options, tag, out string) error {
	if o.Binary == "" || out == "" {
		return errors.New("--binary and --out are required")
	}
	ref, err := name.NewTag(tag)
	if err != nil {
		return fmt.Errorf("--tag: %w", err)
	}
	img, err := Build(o)
	if err != nil {
		return err
	}
	if err := tarball.WriteToFile(out, ref, img); err != nil {
		return fmt.Errorf("write %s: %w", out, err)
	}
	d, err := img.Digest()
	if err != nil {
		return err
	}
	fmt.Printf("%s: %s %s\n", out, ref, d)
	return nil
}
