package main

import (
	"bytes"
	"fmt"
	"os"
	"reflect"
	"strconv"
	"strings"
	"time"

	"gopkg.in/yaml.v3"
)

// readSettings merges the sources of a configuration below the flags,
// each over the one before: the defaults, the YAML file at path (none when
// path is empty), and the DDLGUARD_* variables of environ (KEY=value
// strings, as os.Environ returns them), named after each setting's key
// path. It checks what reading needs (YAML syntax, known keys, value
// types); errors name the source and the field. loadConfig applies the
// flags on top and validates the rest; lint uses the guard section alone.
func readSettings(path string, environ []string) (Config, error) {
	cfg := defaultConfig()
	if path != "" {
		data, err := os.ReadFile(path)
		if err != nil {
			return cfg, configErrorf("config file: %v", err)
		}
		var doc yaml.Node
		dec := yaml.NewDecoder(bytes.NewReader(data))
		if err := dec.Decode(&doc); err != nil && err.Error() != "EOF" {
			return cfg, configErrorf("config file %s: %v", path, strings.TrimPrefix(err.Error(), "yaml: "))
		}
		if len(doc.Content) > 0 {
			if err := decodeNode("", doc.Content[0], reflect.ValueOf(&cfg).Elem()); err != nil {
				return cfg, configErrorf("config file %s: %v", path, err)
			}
		}
	}
	if err := applyEnv(reflect.ValueOf(&cfg).Elem(), "", environ); err != nil {
		return cfg, err
	}
	return cfg, nil
}

// decodeNode copies a YAML node into v, naming the offending field on error.
func decodeNode(path string, n *yaml.Node, v reflect.Value) error {
	switch v.Kind() {
	case reflect.Ptr:
		if n.Tag == "!!null" {
			return nil
		}
		p := reflect.New(v.Type().Elem())
		if err := decodeNode(path, n, p.Elem()); err != nil {
			return err
		}
		v.Set(p)
		return nil
	case reflect.Map:
		if n.Tag == "!!null" {
			return nil
		}
		if n.Kind != yaml.MappingNode {
			return fmt.Errorf("%s (line %d): expected a mapping", path, n.Line)
		}
		if v.IsNil() {
			v.Set(reflect.MakeMap(v.Type()))
		}
		for i := 0; i+1 < len(n.Content); i += 2 {
			key := n.Content[i].Value
			elem := reflect.New(v.Type().Elem()).Elem()
			if err := decodeNode(join(path, key), n.Content[i+1], elem); err != nil {
				return err
			}
			v.SetMapIndex(reflect.ValueOf(key), elem)
		}
		return nil
	case reflect.Slice:
		if n.Tag == "!!null" {
			return nil
		}
		if n.Kind != yaml.SequenceNode {
			return fmt.Errorf("%s (line %d): expected a list", path, n.Line)
		}
		out := reflect.MakeSlice(v.Type(), len(n.Content), len(n.Content))
		for i, item := range n.Content {
			if err := decodeNode(fmt.Sprintf("%s[%d]", path, i), item, out.Index(i)); err != nil {
				return err
			}
		}
		v.Set(out)
		return nil
	}
	if v.Kind() == reflect.Struct {
		if n.Kind != yaml.MappingNode {
			if n.Tag == "!!null" {
				return nil
			}
			return fmt.Errorf("%s (line %d): expected a mapping of settings", orTop(path), n.Line)
		}
		for i := 0; i+1 < len(n.Content); i += 2 {
			key := n.Content[i].Value
			f, ok := fieldByTag(v, key)
			if !ok {
				return fmt.Errorf("%s (line %d): unknown setting (known: %s)", join(path, key), n.Content[i].Line, strings.Join(tags(v.Type()), ", "))
			}
			if err := decodeNode(join(path, key), n.Content[i+1], f); err != nil {
				return err
			}
		}
		return nil
	}
	if n.Kind != yaml.ScalarNode {
		return fmt.Errorf("%s (line %d): expected a single value", path, n.Line)
	}
	if err := setLeaf(v, n.Value); err != nil {
		return fmt.Errorf("%s (line %d): %v", path, n.Line, err)
	}
	return nil
}

// applyEnv overrides leaves from DDLGUARD_* variables.
func applyEnv(v reflect.Value, path string, environ []string) error {
	for i := 0; i < v.NumField(); i++ {
		tag := v.Type().Field(i).Tag.Get("yaml")
		p := join(path, tag)
		switch v.Field(i).Kind() {
		case reflect.Struct:
			if err := applyEnv(v.Field(i), p, environ); err != nil {
				return err
			}
			continue
		case reflect.Map, reflect.Slice, reflect.Ptr:
			continue // file only
		}
		name := envName(p)
		if val, ok := lookupEnv(environ, name); ok {
			if err := setLeaf(v.Field(i), val); err != nil {
				return configErrorf("%s (environment %s): %v", p, name, err)
			}
		}
	}
	return nil
}

func envName(path string) string {
	return "DDLGUARD_" + strings.ToUpper(strings.ReplaceAll(path, ".", "_"))
}

func lookupEnv(environ []string, name string) (string, bool) {
	for i := len(environ) - 1; i >= 0; i-- {
		if k, v, ok := strings.Cut(environ[i], "="); ok && k == name {
			return v, true
		}
	}
	return "", false
}

// setLeaf parses s into a leaf setting.
func setLeaf(v reflect.Value, s string) error {
	switch v.Interface().(type) {
	case time.Duration:
		d, err := time.ParseDuration(strings.TrimSpace(s))
		if err != nil {
			return fmt.Errorf("%q is not a duration (write it like 500ms, 5s or 1m)", s)
		}
		v.SetInt(int64(d))
	case ByteSize:
		n, err := parseByteSize(s)
		if err != nil {
			return err
		}
		v.SetInt(n)
	case bool:
		b, err := strconv.ParseBool(strings.TrimSpace(s))
		if err != nil {
			return fmt.Errorf("%q is not true or false", s)
		}
		v.SetBool(b)
	case string:
		v.SetString(s)
	case int:
		n, err := strconv.Atoi(strings.TrimSpace(s))
		if err != nil {
			return fmt.Errorf("%q is not a whole number", s)
		}
		v.SetInt(int64(n))
	default:
		return fmt.Errorf("unsupported setting type %s", v.Type())
	}
	return nil
}

func parseByteSize(s string) (int64, error) {
	t := strings.TrimSpace(s)
	units := []struct {
		suffix string
		mult   int64
	}{{"KiB", 1 << 10}, {"MiB", 1 << 20}, {"GiB", 1 << 30}, {"kB", 1 << 10}, {"MB", 1 << 20}, {"GB", 1 << 30}, {"B", 1}}
	mult := int64(1)
	for _, u := range units {
		if strings.HasSuffix(t, u.suffix) {
			t, mult = strings.TrimSpace(strings.TrimSuffix(t, u.suffix)), u.mult
			break
		}
	}
	n, err := strconv.ParseInt(t, 10, 64)
	if err != nil || n < 0 || n > (1<<40)/mult {
		return 0, fmt.Errorf("%q is not a size (write it like 1048576, 64MiB or 1GiB)", s)
	}
	return n * mult, nil
}

func fieldByTag(v reflect.Value, tag string) (reflect.Value, bool) {
	for i := 0; i < v.NumField(); i++ {
		if v.Type().Field(i).Tag.Get("yaml") == tag {
			return v.Field(i), true
		}
	}
	return reflect.Value{}, false
}

func tags(t reflect.Type) []string {
	out := make([]string, t.NumField())
	for i := range out {
		out[i] = t.Field(i).Tag.Get("yaml")
	}
	return out
}

func join(path, key string) string {
	if path == "" {
		return key
	}
	return path + "." + key
}

func orTop(path string) string {
	if path == "" {
		return "top level"
	}
	return path
}
