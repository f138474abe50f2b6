package harness

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
)

// The consumer matrix document (test/consumers.md) has one generated
// section per cgroup version: the e2e TestConsumers writes the v1 one on a
// v1 host and the v2 one in the VM tier, each run only its own. A section
// sits between two HTML comments, so the rest of the document (title,
// notes) is the same Markdown whoever wrote it last.

// EnvConsumersMD is the path of the consumer matrix document to rewrite
// (relative paths are taken from the module root). Unset, TestConsumers
// only logs its table: `make consumers` sets it, `make test` does not.
const EnvConsumersMD = "SECCOMPAGENT_CONSUMERS_MD"

// Section keys of the consumer matrix document.
const (
	SectionCgroupV1 = "cgroup v1"
	SectionCgroupV2 = "cgroup v2"
)

func sectionBegin(key string) string { return "<!-- begin " + key + " section: generated -->\n" }
func sectionEnd(key string) string   { return "<!-- end " + key + " section -->\n" }

// Section wraps body in the markers of section key.
func Section(key, body string) string {
	if !strings.HasSuffix(body, "\n") {
		body += "\n"
	}
	return sectionBegin(key) + body + sectionEnd(key)
}

// SectionBody returns the body of section key in doc.
func SectionBody(doc, key string) (string, bool) {
	_, rest, ok := strings.Cut(doc, sectionBegin(key))
	if !ok {
		return "", false
	}
	body, _, ok := strings.Cut(rest, sectionEnd(key))
	return body, ok
}

// withSection returns doc with the body of section key replaced (doc as
// it is when it has no such section).
func withSection(doc, key, body string) string {
	before, rest, ok := strings.Cut(doc, sectionBegin(key))
	if !ok {
		return doc
	}
	_, after, ok := strings.Cut(rest, sectionEnd(key))
	if !ok {
		return doc
	}
	return before + Section(key, body) + after
}

// ConsumersMDPath returns $SECCOMPAGENT_CONSUMERS_MD made absolute, or ""
// when it is unset.
func ConsumersMDPath() (string, error) {
	p := os.Getenv(EnvConsumersMD)
	if p == "" || filepath.IsAbs(p) {
		return p, nil
	}
	root, err := ModuleRoot()
	if err != nil {
		return "", err
	}
	return filepath.Join(root, p), nil
}

// WriteConsumersDoc writes doc (a whole document, rendered by this run)
// to path, keeping from the document already there the sections named by
// keep (the ones this run did not produce).
func WriteConsumersDoc(path, doc string, keep ...string) error {
	old, err := os.ReadFile(path)
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return err
	}
	for _, key := range keep {
		if body, ok := SectionBody(string(old), key); ok {
			doc = withSection(doc, key, body)
		}
	}
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, []byte(doc), 0o644); err != nil {
		return fmt.Errorf("write %s: %w", tmp, err)
	}
	return os.Rename(tmp, path)
}
