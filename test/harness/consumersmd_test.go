package harness

import (
	"os"
	"path/filepath"
	"testing"
)

// TestWriteConsumersDoc: a run writes its own section and the frame, and
// keeps the other cgroup version's section from the file already there.
func TestWriteConsumersDoc(t *testing.T) {
	doc := func(v1, v2 string) string {
		return "# title\n\n" + Section(SectionCgroupV1, v1) + "\n" + Section(SectionCgroupV2, v2) + "\nnotes\n"
	}
	path := filepath.Join(t.TempDir(), "consumers.md")
	for _, step := range []struct {
		name string
		doc  string
		keep string
		want string
	}{
		{"first v1 run, no file", doc("v1 table A", "placeholder"), SectionCgroupV2, doc("v1 table A", "placeholder")},
		{"v2 run keeps v1", doc("placeholder", "v2 table B"), SectionCgroupV1, doc("v1 table A", "v2 table B")},
		{"v1 run keeps v2", doc("v1 table C\n", "placeholder"), SectionCgroupV2, doc("v1 table C", "v2 table B")},
	} {
		if err := WriteConsumersDoc(path, step.doc, step.keep); err != nil {
			t.Fatalf("%s: %v", step.name, err)
		}
		got, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		if string(got) != step.want {
			t.Errorf("%s: got\n%s\nwant\n%s", step.name, got, step.want)
		}
	}
	if body, ok := SectionBody(doc("a", "b\n"), SectionCgroupV2); !ok || body != "b\n" {
		t.Errorf("SectionBody = %q, %v; want \"b\\n\", true", body, ok)
	}
	if _, ok := SectionBody("# no sections\n", SectionCgroupV1); ok {
		t.Error("SectionBody found a section in a document without one")
	}
}
