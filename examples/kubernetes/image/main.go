// Command image writes the agent's container image (`make image`): an OCI
// image layout tarball that also carries docker-archive's manifest.json, so
// `ctr -n k8s.io images import`, `docker load` and `podman load` all take
// it. It holds the static binaries in ROOTFS (the agent and the runtime
// wrapper under /usr/local/bin, built by the Makefile) and nothing else;
// examples/kubernetes/daemonset.yaml runs it.
//
//	go run ./examples/kubernetes/image --rootfs DIR --name localhost/seccompagent:latest --out FILE
//
// The writer is the one the engine tier tests load into podman, containerd
// and dockerd (test/engines.WriteImage): fixed timestamps, so the same
// binaries always give the same image digest.
package main

import (
	"errors"
	"flag"
	"fmt"
	"os"
	"path/filepath"

	"github.com/seccompagent/seccompagent/test/engines"
)

func main() {
	if err := run(); err != nil {
		fmt.Fprintf(os.Stderr, "image: %v\n", err)
		os.Exit(1)
	}
}

func run() error {
	rootfs := flag.String("rootfs", "", "directory holding usr/local/bin/seccompagent and usr/local/bin/seccompagent-runtime (required)")
	name := flag.String("name", "localhost/seccompagent:latest", "image reference (with a registry part, so no engine rewrites it to docker.io)")
	out := flag.String("out", "", "tarball to write (required)")
	flag.Parse()
	if *rootfs == "" || *out == "" {
		return errors.New("--rootfs and --out are required")
	}
	for _, bin := range []string{"seccompagent", "seccompagent-runtime"} {
		p := filepath.Join(*rootfs, "usr", "local", "bin", bin)
		if fi, err := os.Stat(p); err != nil || fi.Mode().Perm()&0o111 == 0 {
			return fmt.Errorf("%s: not an executable file (%v): build it first (make image)", p, err)
		}
	}
	img, err := engines.WriteImageFile(*out, *rootfs, *name, engines.ImageConfig{
		Env: []string{"PATH=/usr/local/bin"},
		Cmd: []string{"/usr/local/bin/seccompagent", "serve"},
	})
	if err != nil {
		return err
	}
	fmt.Printf("%s: %s (image id %s)\n", *out, img.Name, img.ConfigDigest)
	return nil
}
