// Command schemacheck decodes Kubernetes manifests strictly into the
// Kubernetes API's own Go types (k8s.io/api), the offline stand-in for
// schema validation: an unknown or misspelt field, a value of the wrong type
// or a malformed quantity fails. Objects of kinds it has no types for
// (ServiceMonitor, PrometheusRule) are skipped and named.
//
//	go run . FILE...   (FILE "-": stdin; multi-document YAML)
package main

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	policyv1 "k8s.io/api/policy/v1"
	"k8s.io/apimachinery/pkg/runtime/schema"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
	sigsjson "sigs.k8s.io/json"
	"sigs.k8s.io/yaml"
)

var kinds = map[schema.GroupVersionKind]func() any{
	{Group: "apps", Version: "v1", Kind: "Deployment"}:            func() any { return &appsv1.Deployment{} },
	{Group: "", Version: "v1", Kind: "Service"}:                   func() any { return &corev1.Service{} },
	{Group: "", Version: "v1", Kind: "ConfigMap"}:                 func() any { return &corev1.ConfigMap{} },
	{Group: "", Version: "v1", Kind: "ServiceAccount"}:            func() any { return &corev1.ServiceAccount{} },
	{Group: "policy", Version: "v1", Kind: "PodDisruptionBudget"}: func() any { return &policyv1.PodDisruptionBudget{} },
}

func main() {
	if len(os.Args) < 2 {
		fmt.Fprintln(os.Stderr, "usage: schemacheck FILE...")
		os.Exit(2)
	}
	failed := false
	for _, name := range os.Args[1:] {
		if err := checkFile(name); err != nil {
			fmt.Fprintf(os.Stderr, "schemacheck: FAIL: %v\n", err)
			failed = true
		}
	}
	if failed {
		os.Exit(1)
	}
}

func checkFile(name string) error {
	var r io.Reader
	if name == "-" {
		r = os.Stdin
	} else {
		f, err := os.Open(name)
		if err != nil {
			return err
		}
		defer f.Close()
		r = f
	}
	docs := utilyaml.NewYAMLReader(bufio.NewReader(r))
	var errs []error
	checked := 0
	for i := 0; ; i++ {
		doc, err := docs.Read()
		if err == io.EOF {
			break
		}
		if err != nil {
			return fmt.Errorf("%s: %v", name, err)
		}
		if len(bytes.TrimSpace(stripComments(doc))) == 0 {
			continue
		}
		var meta struct {
			APIVersion string `json:"apiVersion"`
			Kind       string `json:"kind"`
			Metadata   struct {
				Name string `json:"name"`
			} `json:"metadata"`
		}
		if err := yaml.Unmarshal(doc, &meta); err != nil {
			errs = append(errs, fmt.Errorf("%s#%d: %v", name, i, err))
			continue
		}
		gv, err := schema.ParseGroupVersion(meta.APIVersion)
		if err != nil {
			errs = append(errs, fmt.Errorf("%s#%d: apiVersion %q: %v", name, i, meta.APIVersion, err))
			continue
		}
		mk, ok := kinds[gv.WithKind(meta.Kind)]
		if !ok {
			fmt.Fprintf(os.Stderr, "schemacheck: %s: %s %s %s: no types here, not checked\n", name, meta.APIVersion, meta.Kind, meta.Metadata.Name)
			continue
		}
		// As the API server decodes: case-sensitive field names, no
		// unknown or duplicate fields.
		j, err := yaml.YAMLToJSONStrict(doc)
		if err == nil {
			var strict []error
			strict, err = sigsjson.UnmarshalStrict(j, mk(), sigsjson.DisallowDuplicateFields, sigsjson.DisallowUnknownFields)
			if err == nil {
				err = errors.Join(strict...)
			}
		}
		if err != nil {
			errs = append(errs, fmt.Errorf("%s: %s %s: %v", name, meta.Kind, meta.Metadata.Name, err))
			continue
		}
		checked++
	}
	if checked == 0 && len(errs) == 0 {
		errs = append(errs, fmt.Errorf("%s: no Kubernetes objects of a known kind", name))
	}
	return errors.Join(errs...)
}

// stripComments drops whole-line comments, so a document of comments only
// counts as empty.
func stripComments(doc []byte) []byte {
	var out bytes.Buffer
	for _, line := range bytes.Split(doc, []byte("\n")) {
		if t := bytes.TrimSpace(line); len(t) > 0 && t[0] != '#' {
			out.Write(line)
			out.WriteByte('\n')
		}
	}
	return out.Bytes()
}
