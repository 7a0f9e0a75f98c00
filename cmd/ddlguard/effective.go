package main

import (
	"fmt"
	"reflect"
	"regexp"
	"slices"
	"strconv"
	"time"
)

// effectiveSettings lists every setting as `path: value`, in the schema's
// order (maps sorted by key), with secrets hidden: what check-config prints.
func effectiveSettings(cfg Config) []string {
	var out []string
	var walk func(path string, v reflect.Value)
	walk = func(path string, v reflect.Value) {
		switch v.Kind() {
		case reflect.Struct:
			for i := 0; i < v.NumField(); i++ {
				walk(join(path, v.Type().Field(i).Tag.Get("yaml")), v.Field(i))
			}
			return
		case reflect.Map:
			keys := make([]string, 0, v.Len())
			for _, k := range v.MapKeys() {
				keys = append(keys, k.String())
			}
			slices.Sort(keys)
			for _, k := range keys {
				walk(join(path, k), v.MapIndex(reflect.ValueOf(k)))
			}
			return
		case reflect.Ptr:
			if v.IsNil() {
				return
			}
			walk(path, v.Elem())
			return
		}
		out = append(out, path+": "+settingValue(path, v))
	}
	walk("", reflect.ValueOf(cfg))
	return out
}

// secretSettings are shown only as set or unset.
var secretSettings = map[string]bool{"admin.token": true}

var (
	dsnKeywordPassword = regexp.MustCompile(`(password\s*=\s*)('(?:[^'\\]|\\.)*'|\S+)`)
	dsnURLPassword     = regexp.MustCompile(`(://[^:/@]*:)[^@]*@`)
)

// redactDSN hides the password of a libpq URL or key=value string.
func redactDSN(dsn string) string {
	dsn = dsnKeywordPassword.ReplaceAllString(dsn, "${1}xxxxx")
	return dsnURLPassword.ReplaceAllString(dsn, "${1}xxxxx@")
}

func settingValue(path string, v reflect.Value) string {
	switch x := v.Interface().(type) {
	case time.Duration:
		return x.String()
	case ByteSize:
		return strconv.FormatInt(int64(x), 10) + " bytes"
	case []string:
		return fmt.Sprintf("%q", x)
	case string:
		switch {
		case secretSettings[path]:
			if x == "" {
				return `""`
			}
			return "(set, not shown)"
		case path == "monitor.dsn":
			return strconv.Quote(redactDSN(x))
		}
		return strconv.Quote(x)
	}
	return fmt.Sprint(v.Interface())
}
