package engines

import (
	"archive/tar"
	"bytes"
	"encoding/json"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// readTar returns the regular files of a tarball by name.
func readTar(t *testing.T, data []byte) map[string][]byte {
	t.Helper()
	files := map[string][]byte{}
	tr := tar.NewReader(bytes.NewReader(data))
	for {
		hdr, err := tr.Next()
		if err == io.EOF {
			return files
		}
		if err != nil {
			t.Fatal(err)
		}
		if hdr.Typeflag != tar.TypeReg {
			continue
		}
		b, err := io.ReadAll(tr)
		if err != nil {
			t.Fatal(err)
		}
		files[hdr.Name] = b
	}
}

// TestWriteImage checks the tarball's two views against each other: the OCI
// layout (index.json → manifest → config, layer) and docker's manifest.json,
// every digest against its blob, and the layer's entries.
func TestWriteImage(t *testing.T) {
	rootfs := t.TempDir()
	if err := os.MkdirAll(filepath.Join(rootfs, "bin"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(rootfs, "bin", "busybox"), []byte("not really busybox"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink("busybox", filepath.Join(rootfs, "bin", "sh")); err != nil {
		t.Fatal(err)
	}
	if err := os.Mkdir(filepath.Join(rootfs, "tmp"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(filepath.Join(rootfs, "tmp"), os.ModeSticky|0o777); err != nil {
		t.Fatal(err)
	}

	var buf bytes.Buffer
	const name = "localhost/x:test"
	img, err := WriteImage(&buf, rootfs, name, ImageConfig{Env: []string{"PATH=/bin"}, Cmd: []string{"/bin/sh"}})
	if err != nil {
		t.Fatal(err)
	}
	files := readTar(t, buf.Bytes())
	for n, b := range files {
		if strings.HasPrefix(n, "blobs/sha256/") && digestOf(b) != "sha256:"+strings.TrimPrefix(n, "blobs/sha256/") {
			t.Errorf("blob %s has digest %s", n, digestOf(b))
		}
	}
	if string(files["oci-layout"]) != `{"imageLayoutVersion":"1.0.0"}` {
		t.Errorf("oci-layout = %q", files["oci-layout"])
	}

	var index struct {
		Manifests []descriptor `json:"manifests"`
	}
	if err := json.Unmarshal(files["index.json"], &index); err != nil || len(index.Manifests) != 1 {
		t.Fatalf("index.json %s: %v", files["index.json"], err)
	}
	md := index.Manifests[0]
	if md.Digest != img.ManifestDigest || md.MediaType != mediaTypeManifest ||
		md.Annotations[annotationContainerdName] != name || md.Annotations[annotationRefName] != name {
		t.Errorf("index entry = %+v", md)
	}
	var manifest struct {
		Config descriptor   `json:"config"`
		Layers []descriptor `json:"layers"`
	}
	if err := json.Unmarshal(files[blobPath(md.Digest)], &manifest); err != nil || len(manifest.Layers) != 1 {
		t.Fatalf("manifest: %v", err)
	}
	if manifest.Config.Digest != img.ConfigDigest || manifest.Layers[0].Digest != img.LayerDigest ||
		int64(len(files[blobPath(img.LayerDigest)])) != manifest.Layers[0].Size {
		t.Errorf("manifest = %+v, image = %+v", manifest, img)
	}
	var config struct {
		Architecture, OS string
		Config           struct{ Env, Cmd []string }
		RootFS           struct {
			DiffIDs []string `json:"diff_ids"`
		} `json:"rootfs"`
	}
	if err := json.Unmarshal(files[blobPath(img.ConfigDigest)], &config); err != nil {
		t.Fatal(err)
	}
	if config.Architecture != "amd64" || config.OS != "linux" || len(config.RootFS.DiffIDs) != 1 ||
		config.RootFS.DiffIDs[0] != img.LayerDigest || config.Config.Cmd[0] != "/bin/sh" {
		t.Errorf("config = %+v", config)
	}

	var docker []dockerManifestEntry
	if err := json.Unmarshal(files["manifest.json"], &docker); err != nil || len(docker) != 1 {
		t.Fatalf("manifest.json %s: %v", files["manifest.json"], err)
	}
	if docker[0].Config != blobPath(img.ConfigDigest) || len(docker[0].Layers) != 1 ||
		docker[0].Layers[0] != blobPath(img.LayerDigest) || len(docker[0].RepoTags) != 1 || docker[0].RepoTags[0] != name {
		t.Errorf("manifest.json = %+v", docker)
	}

	// The layer: root-owned entries with the rootfs's modes and links.
	tr := tar.NewReader(bytes.NewReader(files[blobPath(img.LayerDigest)]))
	got := map[string]string{}
	for {
		hdr, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		if hdr.Uid != 0 || hdr.Gid != 0 || !hdr.ModTime.Equal(imageEpoch) {
			t.Errorf("%s: uid %d gid %d mtime %v", hdr.Name, hdr.Uid, hdr.Gid, hdr.ModTime)
		}
		got[hdr.Name] = string(hdr.Typeflag) + " " + hdr.Linkname + " " + os.FileMode(hdr.Mode).String()
	}
	want := map[string]string{
		"bin/":        "5  -rwxr-xr-x",
		"bin/busybox": "0  -rwxr-xr-x",
		"bin/sh":      "2 busybox -rwxrwxrwx",
		"tmp/":        "5  -rwxrwxrwx",
	}
	for k, v := range want {
		if got[k] != v {
			t.Errorf("layer entry %s = %q, want %q", k, got[k], v)
		}
	}
	if len(got) != len(want) {
		t.Errorf("layer entries = %v", got)
	}
	var sticky bool
	tr = tar.NewReader(bytes.NewReader(files[blobPath(img.LayerDigest)]))
	for {
		hdr, err := tr.Next()
		if err != nil {
			break
		}
		if hdr.Name == "tmp/" {
			sticky = hdr.Mode&0o1000 != 0
		}
	}
	if !sticky {
		t.Error("tmp/ lost its sticky bit")
	}

	// Same input, same bytes.
	var again bytes.Buffer
	if _, err := WriteImage(&again, rootfs, name, ImageConfig{Env: []string{"PATH=/bin"}, Cmd: []string{"/bin/sh"}}); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(buf.Bytes(), again.Bytes()) {
		t.Error("WriteImage is not reproducible")
	}
	if _, err := WriteImage(io.Discard, rootfs, "x", ImageConfig{}); err == nil {
		t.Error("a name without registry and tag was accepted")
	}
}
