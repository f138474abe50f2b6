package engines

import (
	"archive/tar"
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"time"
)

// Media types of the OCI image spec (v1.0) used by WriteImage.
const (
	mediaTypeIndex    = "application/vnd.oci.image.index.v1+json"
	mediaTypeManifest = "application/vnd.oci.image.manifest.v1+json"
	mediaTypeConfig   = "application/vnd.oci.image.config.v1+json"
	mediaTypeLayer    = "application/vnd.oci.image.layer.v1.tar"
)

// Annotations naming the image in index.json: containerd's importer reads
// the first, podman (containers/image oci-archive) the second.
const (
	annotationContainerdName = "io.containerd.image.name"
	annotationRefName        = "org.opencontainers.image.ref.name"
)

// imageEpoch is the fixed time stamped on every file and on the config, so
// the same rootfs always gives the same digests.
var imageEpoch = time.Date(2024, 1, 1, 0, 0, 0, 0, time.UTC)

// ImageConfig is the part of the image config the tests set.
type ImageConfig struct {
	// Env, e.g. PATH=/bin.
	Env []string
	// Cmd is the default process.
	Cmd []string
}

// Image describes a tarball written by WriteImage.
type Image struct {
	// Name is the full reference, e.g. localhost/seccompagent-engines:test.
	Name string
	// ConfigDigest ("sha256:…") is the image ID docker and podman report.
	ConfigDigest string
	// ManifestDigest is the digest of the OCI manifest.
	ManifestDigest string
	// LayerDigest is the digest of the single uncompressed layer, which is
	// also its diff ID.
	LayerDigest string
}

// descriptor is an OCI content descriptor.
type descriptor struct {
	MediaType   string            `json:"mediaType"`
	Digest      string            `json:"digest"`
	Size        int64             `json:"size"`
	Annotations map[string]string `json:"annotations,omitempty"`
}

// dockerManifestEntry is one element of docker-archive's manifest.json.
type dockerManifestEntry struct {
	Config   string   `json:"Config"`
	RepoTags []string `json:"RepoTags"`
	Layers   []string `json:"Layers"`
}

// WriteImage writes to w a single-layer linux/amd64 image of the directory
// rootfs, named name (a full reference with a registry part, e.g.
// localhost/x:tag, so that no engine rewrites it to docker.io/library/…).
//
// The tarball is an OCI image layout (oci-layout, index.json, blobs/sha256/…)
// that also carries docker-archive's manifest.json pointing at the same
// blobs, so one file serves `docker load` (which reads manifest.json),
// `podman load` (which reads it as an oci-archive) and `ctr images import`.
// The layer is an uncompressed tar: its digest is its diff ID. Every entry
// is owned by root and stamped with a fixed time; only regular files,
// directories and symbolic links are taken.
func WriteImage(w io.Writer, rootfs, name string, cfg ImageConfig) (*Image, error) {
	if !strings.Contains(name, "/") || !strings.Contains(name, ":") {
		return nil, fmt.Errorf("image name %q: want a full reference like localhost/name:tag", name)
	}
	layer, err := layerTar(rootfs)
	if err != nil {
		return nil, err
	}
	layerDigest := digestOf(layer)

	config, err := json.Marshal(map[string]any{
		"created":      imageEpoch.Format(time.RFC3339),
		"architecture": "amd64",
		"os":           "linux",
		"config": map[string]any{
			"Env":        cfg.Env,
			"Cmd":        cfg.Cmd,
			"WorkingDir": "/",
		},
		"rootfs": map[string]any{
			"type":     "layers",
			"diff_ids": []string{layerDigest},
		},
		"history": []map[string]string{{
			"created":    imageEpoch.Format(time.RFC3339),
			"created_by": "seccompagent test/engines WriteImage",
		}},
	})
	if err != nil {
		return nil, err
	}
	configDigest := digestOf(config)

	manifest, err := json.Marshal(map[string]any{
		"schemaVersion": 2,
		"mediaType":     mediaTypeManifest,
		"config":        descriptor{MediaType: mediaTypeConfig, Digest: configDigest, Size: int64(len(config))},
		"layers":        []descriptor{{MediaType: mediaTypeLayer, Digest: layerDigest, Size: int64(len(layer))}},
	})
	if err != nil {
		return nil, err
	}
	manifestDigest := digestOf(manifest)

	index, err := json.Marshal(map[string]any{
		"schemaVersion": 2,
		"mediaType":     mediaTypeIndex,
		"manifests": []descriptor{{
			MediaType: mediaTypeManifest,
			Digest:    manifestDigest,
			Size:      int64(len(manifest)),
			Annotations: map[string]string{
				annotationContainerdName: name,
				annotationRefName:        name,
			},
		}},
	})
	if err != nil {
		return nil, err
	}
	dockerManifest, err := json.Marshal([]dockerManifestEntry{{
		Config:   blobPath(configDigest),
		RepoTags: []string{name},
		Layers:   []string{blobPath(layerDigest)},
	}})
	if err != nil {
		return nil, err
	}

	tw := tar.NewWriter(w)
	for _, dir := range []string{"blobs/", "blobs/sha256/"} {
		if err := tw.WriteHeader(&tar.Header{Typeflag: tar.TypeDir, Name: dir, Mode: 0o755, ModTime: imageEpoch}); err != nil {
			return nil, err
		}
	}
	files := []struct {
		name string
		data []byte
	}{
		{"oci-layout", []byte(`{"imageLayoutVersion":"1.0.0"}`)},
		{blobPath(layerDigest), layer},
		{blobPath(configDigest), config},
		{blobPath(manifestDigest), manifest},
		{"index.json", index},
		{"manifest.json", dockerManifest},
	}
	for _, f := range files {
		hdr := &tar.Header{Typeflag: tar.TypeReg, Name: f.name, Mode: 0o644, Size: int64(len(f.data)), ModTime: imageEpoch}
		if err := tw.WriteHeader(hdr); err != nil {
			return nil, err
		}
		if _, err := tw.Write(f.data); err != nil {
			return nil, err
		}
	}
	if err := tw.Close(); err != nil {
		return nil, err
	}
	return &Image{Name: name, ConfigDigest: configDigest, ManifestDigest: manifestDigest, LayerDigest: layerDigest}, nil
}

// WriteImageFile is WriteImage into the file path.
func WriteImageFile(path, rootfs, name string, cfg ImageConfig) (*Image, error) {
	f, err := os.Create(path)
	if err != nil {
		return nil, err
	}
	img, err := WriteImage(f, rootfs, name, cfg)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		os.Remove(path)
		return nil, err
	}
	return img, nil
}

// layerTar returns the tar of the tree under root, in lexical order, with
// paths relative to root.
func layerTar(root string) ([]byte, error) {
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	err := filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, err := filepath.Rel(root, path)
		if err != nil || rel == "." {
			return err
		}
		info, err := d.Info()
		if err != nil {
			return err
		}
		hdr := &tar.Header{
			Name:    filepath.ToSlash(rel),
			Mode:    int64(info.Mode().Perm()),
			ModTime: imageEpoch,
			Format:  tar.FormatPAX,
		}
		if info.Mode()&fs.ModeSticky != 0 {
			hdr.Mode |= 0o1000 // tar's TSVTX (the rootfs's /tmp)
		}
		switch {
		case info.Mode().IsRegular():
			hdr.Typeflag = tar.TypeReg
			hdr.Size = info.Size()
		case info.IsDir():
			hdr.Typeflag = tar.TypeDir
			hdr.Name += "/"
		case info.Mode()&fs.ModeSymlink != 0:
			hdr.Typeflag = tar.TypeSymlink
			if hdr.Linkname, err = os.Readlink(path); err != nil {
				return err
			}
		default:
			return nil // devices, sockets, fifos: not in a test rootfs
		}
		if err := tw.WriteHeader(hdr); err != nil {
			return err
		}
		if hdr.Typeflag != tar.TypeReg {
			return nil
		}
		f, err := os.Open(path)
		if err != nil {
			return err
		}
		defer f.Close()
		if n, err := io.Copy(tw, f); err != nil || n != hdr.Size {
			return fmt.Errorf("layer: copy %s: %d of %d bytes: %v", path, n, hdr.Size, err)
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("layer from %s: %w", root, err)
	}
	if err := tw.Close(); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}

func digestOf(data []byte) string {
	sum := sha256.Sum256(data)
	return "sha256:" + hex.EncodeToString(sum[:])
}

// blobPath is where the OCI layout keeps the blob with this digest.
func blobPath(digest string) string {
	return "blobs/sha256/" + strings.TrimPrefix(digest, "sha256:")
}
