package dataplane

import (
	"os"
	"strings"
	"testing"
)

// TestDocsListEveryStageAndReason keeps docs/api.md's table of stages and
// drop reasons complete: an operator reading `ferry errors` must find every
// name there.
func TestDocsListEveryStageAndReason(t *testing.T) {
	doc, err := os.ReadFile("../docs/api.md")
	if err != nil {
		t.Fatal(err)
	}
	for s := range NumStages {
		if !strings.Contains(string(doc), "`"+s.String()+"`") {
			t.Errorf("docs/api.md does not list stage %q", s)
		}
	}
	for r := Reason(1); r < NumReasons; r++ {
		if !strings.Contains(string(doc), "| `"+r.String()+"` |") {
			t.Errorf("docs/api.md does not list drop reason %q", r)
		}
	}
}
