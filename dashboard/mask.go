package dashboard

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net/url"
	"regexp"
	"strings"

	"gopkg.in/yaml.v3"

	"github.com/pipevisor/pipevisor/config"
)

// Masked replaces a secret in every answer of the dashboard.
const Masked = "******"

// urlPassword finds the password of user:password@ in a URL, even one
// that net/url would refuse.
var urlPassword = regexp.MustCompile(`(://[^/@:\s]*:)([^@\s/]*)@`)

// redactURLs replaces the password of every URL in s.
func redactURLs(s string) string {
	return urlPassword.ReplaceAllString(s, "${1}"+Masked+"@")
}

// secretKey reports whether a mapping key names a secret: anything
// holding password, passwd, secret, token, nonce or credential, and access_key; "key" is a
// secret next to a "secret" (the sqs sections).
func secretKey(k string, siblings map[string]bool) bool {
	k = strings.ToLower(k)
	for _, s := range []string{"password", "passwd", "secret", "token", "access_key", "api_key", "apikey", "credential", "nonce"} {
		if strings.Contains(k, s) {
			return true
		}
	}
	return k == "key" && siblings["secret"]
}

// MaskedConfig returns root as YAML with every secret replaced by
// Masked: values under a key naming a secret (see secretKey), and the
// password of every URL. Null values and the loader's warnings are left
// out.
func MaskedConfig(root *config.Root) (string, error) {
	var doc yaml.Node
	b, err := yaml.Marshal(root)
	if err != nil {
		return "", fmt.Errorf("dashboard: config: %w", err)
	}
	if err := yaml.Unmarshal(b, &doc); err != nil {
		return "", fmt.Errorf("dashboard: config: %w", err)
	}
	maskNode(&doc)
	var out strings.Builder
	enc := yaml.NewEncoder(&out)
	enc.SetIndent(2)
	if err := enc.Encode(&doc); err != nil {
		return "", fmt.Errorf("dashboard: config: %w", err)
	}
	return out.String(), nil
}

// maskNode masks n in place and prunes nulls and warnings.
func maskNode(n *yaml.Node) {
	switch n.Kind {
	case yaml.DocumentNode, yaml.SequenceNode:
		for _, c := range n.Content {
			maskNode(c)
		}
	case yaml.MappingNode:
		siblings := make(map[string]bool, len(n.Content)/2)
		for i := 0; i+1 < len(n.Content); i += 2 {
			siblings[strings.ToLower(n.Content[i].Value)] = true
		}
		kept := n.Content[:0]
		for i := 0; i+1 < len(n.Content); i += 2 {
			k, v := n.Content[i], n.Content[i+1]
			if v.Tag == "!!null" || k.Value == "warnings" {
				continue
			}
			if secretKey(k.Value, siblings) {
				maskAll(v)
			} else {
				maskNode(v)
			}
			kept = append(kept, k, v)
		}
		n.Content = kept
	case yaml.ScalarNode:
		n.Value = redactURLs(n.Value)
	}
}

// maskAll masks every non-empty string below n (numbers and booleans,
// such as sasl.is_token, are kept).
func maskAll(n *yaml.Node) {
	if n.Kind == yaml.ScalarNode {
		if n.Tag == "!!str" && n.Value != "" {
			n.Value = Masked
			n.Style = 0
		}
		return
	}
	for _, c := range n.Content {
		maskAll(c)
	}
}

// secrets collects the secret values of root (the strings MaskedConfig
// masks, and URL passwords), to scrub from any answer.
func secrets(root *config.Root) [][]byte {
	var doc yaml.Node
	b, err := yaml.Marshal(root)
	if err != nil || yaml.Unmarshal(b, &doc) != nil {
		return nil
	}
	seen := make(map[string]bool)
	var walk func(n *yaml.Node, secret bool)
	walk = func(n *yaml.Node, secret bool) {
		switch n.Kind {
		case yaml.ScalarNode:
			if secret && n.Tag == "!!str" {
				seen[n.Value] = true
			}
			for _, m := range urlPassword.FindAllStringSubmatch(n.Value, -1) {
				if p, err := url.PathUnescape(m[2]); err == nil {
					seen[p] = true
				}
				seen[m[2]] = true
			}
		case yaml.MappingNode:
			siblings := make(map[string]bool, len(n.Content)/2)
			for i := 0; i+1 < len(n.Content); i += 2 {
				siblings[strings.ToLower(n.Content[i].Value)] = true
			}
			for i := 0; i+1 < len(n.Content); i += 2 {
				walk(n.Content[i+1], secret || secretKey(n.Content[i].Value, siblings))
			}
		default:
			for _, c := range n.Content {
				walk(c, secret)
			}
		}
	}
	walk(&doc, false)
	var out [][]byte
	for s := range seen {
		// Too short to scrub without mangling the answer; such a
		// value is masked where it appears as configuration anyway.
		if len(s) < 4 {
			continue
		}
		out = append(out, []byte(s))
		if j, err := json.Marshal(s); err == nil && !bytes.Equal(j[1:len(j)-1], []byte(s)) {
			out = append(out, j[1:len(j)-1])
		}
	}
	return out
}

// scrub replaces every secret in b, and the password of every URL.
func scrub(b []byte, secrets [][]byte) []byte {
	for _, s := range secrets {
		b = bytes.ReplaceAll(b, s, []byte(Masked))
	}
	return urlPassword.ReplaceAll(b, []byte("${1}"+Masked+"@"))
}
