package console

import (
	"embed"
	"encoding/json"
	"fmt"
	"net/http"
	"path"
	"strings"

	"github.com/arbiter-dev/arbiter/gen/openapi"
)

// examplesFS holds request examples, one file per RPC named SERVICE.METHOD.json (for example
// DecisionService.Decide.json): {"summary": ..., "value": <the request as JSON>}. The tests
// send each one to a server.
//
//go:embed examples/*.json
var examplesFS embed.FS

// Examples returns the request examples by RPC path ("/arbiter.v1.DecisionService/Decide"),
// as JSON requests.
func Examples() (map[string]json.RawMessage, error) {
	files, err := examplesFS.ReadDir("examples")
	if err != nil {
		return nil, err
	}
	out := make(map[string]json.RawMessage, len(files))
	for _, f := range files {
		raw, err := examplesFS.ReadFile(path.Join("examples", f.Name()))
		if err != nil {
			return nil, err
		}
		var ex struct {
			Value json.RawMessage `json:"value"`
		}
		if err := json.Unmarshal(raw, &ex); err != nil {
			return nil, fmt.Errorf("console: example %s: %w", f.Name(), err)
		}
		svc, method, _ := strings.Cut(strings.TrimSuffix(f.Name(), ".json"), ".")
		out["/arbiter.v1."+svc+"/"+method] = ex.Value
	}
	return out, nil
}

// openAPIDocument returns the generated OpenAPI document with the request examples added to
// their operations, and the Connect-Protocol-Version header marked optional (Arbiter takes a
// JSON POST without it, as connect-go servers do).
func openAPIDocument() ([]byte, error) {
	var doc map[string]any
	if err := json.Unmarshal(openapi.Document, &doc); err != nil {
		return nil, fmt.Errorf("console: OpenAPI document: %w", err)
	}
	files, err := examplesFS.ReadDir("examples")
	if err != nil {
		return nil, err
	}
	paths, _ := doc["paths"].(map[string]any)
	for p, item := range paths {
		post, _ := item.(map[string]any)["post"].(map[string]any)
		params, _ := post["parameters"].([]any)
		for _, prm := range params {
			if m, ok := prm.(map[string]any); ok && m["name"] == "Connect-Protocol-Version" {
				m["required"] = false
			}
		}
		_ = p
	}
	for _, f := range files {
		raw, _ := examplesFS.ReadFile(path.Join("examples", f.Name()))
		var ex map[string]any
		if err := json.Unmarshal(raw, &ex); err != nil {
			return nil, fmt.Errorf("console: example %s: %w", f.Name(), err)
		}
		svc, method, _ := strings.Cut(strings.TrimSuffix(f.Name(), ".json"), ".")
		item, ok := paths["/arbiter.v1."+svc+"/"+method].(map[string]any)
		if !ok {
			return nil, fmt.Errorf("console: example %s: no such RPC in the OpenAPI document", f.Name())
		}
		body, _ := item["post"].(map[string]any)["requestBody"].(map[string]any)
		content, _ := body["content"].(map[string]any)["application/json"].(map[string]any)
		if content == nil {
			return nil, fmt.Errorf("console: example %s: the RPC has no JSON request body", f.Name())
		}
		content["examples"] = map[string]any{"example": ex}
	}
	return json.MarshalIndent(doc, "", "  ")
}

func (c *Console) serveOpenAPI(w http.ResponseWriter, _ *http.Request) {
	w.Header().Set("Content-Type", "application/json")
	_, _ = w.Write(c.openAPI)
}
