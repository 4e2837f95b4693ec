package config

import (
	"errors"
	"fmt"
	"os"
	"reflect"
	"regexp"
	"strconv"
	"strings"
	"time"

	"go.yaml.in/yaml/v3"
)

// Load reads a configuration file, expands ${ENV} references in its values
// with getenv, decodes it strictly over the defaults and validates it.
func Load(path string, getenv func(string) string) (*Config, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("read config: %w", err)
	}
	return Parse(b, getenv)
}

// Parse is Load of the file's content.
func Parse(b []byte, getenv func(string) string) (*Config, error) {
	var root yaml.Node
	if err := yaml.Unmarshal(b, &root); err != nil {
		return nil, fmt.Errorf("parse config: %w", err)
	}
	if len(root.Content) == 0 {
		return nil, errors.New("parse config: the file is empty")
	}
	expanded := map[*yaml.Node]bool{}
	if err := expandEnv(root.Content[0], "", getenv, expanded); err != nil {
		return nil, err
	}
	// An unknown key is a typo, not a setting to ignore; a value of the
	// wrong type is reported with its key.
	if err := checkNode(root.Content[0], reflect.TypeFor[Config](), "", expanded); err != nil {
		return nil, err
	}
	c := Default()
	if err := root.Content[0].Decode(c); err != nil {
		return nil, fmt.Errorf("parse config: %w", err)
	}
	return c, c.Validate()
}

var (
	nodeType        = reflect.TypeFor[yaml.Node]()
	durationType    = reflect.TypeFor[time.Duration]()
	unmarshalerType = reflect.TypeFor[yaml.Unmarshaler]()
)

// yamlFields maps the YAML keys of struct type t to their fields, with the
// fields of inlined structs (`yaml:",inline"`) at the level they inline to.
func yamlFields(t reflect.Type, into map[string]reflect.StructField) {
	for i := range t.NumField() {
		f := t.Field(i)
		name, opts, _ := strings.Cut(f.Tag.Get("yaml"), ",")
		switch {
		case opts == "inline":
			yamlFields(f.Type, into)
		case name != "" && name != "-":
			into[name] = f
		}
	}
}

// checkNode checks n against the YAML shape of t: every key must be a field,
// every value must decode into its field. Errors name the key.
//
// A value that came from the environment is a string until here; where the
// field wants a number or a boolean, it is read as one.
func checkNode(n *yaml.Node, t reflect.Type, path string, expanded map[*yaml.Node]bool) error {
	if t == nodeType {
		return nil
	}
	switch {
	case t.Kind() == reflect.Struct && !reflect.PointerTo(t).Implements(unmarshalerType):
		if n.Kind != yaml.MappingNode {
			return fmt.Errorf("%s: must be a mapping", orRoot(path))
		}
		fields := map[string]reflect.StructField{}
		yamlFields(t, fields)
		var errs []error
		for i := 0; i+1 < len(n.Content); i += 2 {
			key := n.Content[i].Value
			sub := key
			if path != "" {
				sub = path + "." + key
			}
			f, ok := fields[key]
			if !ok {
				errs = append(errs, fmt.Errorf("%s: unknown key (line %d)", sub, n.Content[i].Line))
				continue
			}
			if err := checkNode(n.Content[i+1], f.Type, sub, expanded); err != nil {
				errs = append(errs, err)
			}
		}
		return errors.Join(errs...)
	case t.Kind() == reflect.Slice && t.Elem().Kind() == reflect.Struct:
		if n.Kind != yaml.SequenceNode {
			return fmt.Errorf("%s: must be a list", path)
		}
		var errs []error
		for i, c := range n.Content {
			if err := checkNode(c, t.Elem(), path+"["+strconv.Itoa(i)+"]", expanded); err != nil {
				errs = append(errs, err)
			}
		}
		return errors.Join(errs...)
	case t == durationType:
		if _, err := time.ParseDuration(n.Value); err != nil || n.Kind != yaml.ScalarNode {
			return fmt.Errorf("%s: line %d: %q is not a duration such as 500ms, 60s or 10m", path, n.Line, n.Value)
		}
		return nil
	}
	if expanded[n] {
		switch t.Kind() {
		case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64,
			reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64,
			reflect.Float32, reflect.Float64, reflect.Bool:
			n.Tag = "" // resolve "8" as !!int, "true" as !!bool
		}
	}
	if err := n.Decode(reflect.New(t).Interface()); err != nil {
		msg := err.Error()
		if te := (*yaml.TypeError)(nil); errors.As(err, &te) && len(te.Errors) > 0 {
			msg = te.Errors[0]
		}
		return fmt.Errorf("%s: %s", path, strings.TrimPrefix(msg, "yaml: "))
	}
	return nil
}

func orRoot(path string) string {
	if path == "" {
		return "config"
	}
	return path
}

var envRef = regexp.MustCompile(`\$\$|\$\{[^}]*\}?`)

var envName = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]*$`)

// EnvError is a value whose ${NAME} references name variables that are
// unset or empty. Programs read Missing (otpd -print-config reports them as
// "missing_env"); people read Error.
type EnvError struct {
	Key     string
	Missing []string
}

func (e *EnvError) Error() string {
	return fmt.Sprintf("%s: environment variable %s is not set", e.Key, strings.Join(e.Missing, ", "))
}

// EnvRef is a ${NAME} reference of the file: the key whose value holds it
// and the variable's name.
type EnvRef struct {
	Key  string `json:"key"`
	Name string `json:"name"`
}

// MissingEnv lists, in file order, the references of the EnvErrors joined in
// err.
func MissingEnv(err error) []EnvRef {
	var refs []EnvRef
	for _, e := range Split(err) {
		var ee *EnvError
		if errors.As(e, &ee) {
			for _, name := range ee.Missing {
				refs = append(refs, EnvRef{Key: ee.Key, Name: name})
			}
		}
	}
	return refs
}

// expandEnv replaces ${NAME} in every scalar value with the environment
// variable's value ("$$" stands for "$"). An unset variable, or a "${" that
// is not a well-formed reference, is an error that names the key, so a
// missing secret never becomes an empty one; every such error of the file is
// reported at once. Expanded nodes are recorded in expanded.
func expandEnv(n *yaml.Node, path string, getenv func(string) string, expanded map[*yaml.Node]bool) error {
	var errs []error
	switch n.Kind {
	case yaml.MappingNode:
		for i := 0; i+1 < len(n.Content); i += 2 {
			key := n.Content[i].Value
			if path != "" {
				key = path + "." + key
			}
			errs = append(errs, expandEnv(n.Content[i+1], key, getenv, expanded))
		}
	case yaml.SequenceNode:
		for i, c := range n.Content {
			errs = append(errs, expandEnv(c, path+"["+strconv.Itoa(i)+"]", getenv, expanded))
		}
	case yaml.ScalarNode:
		if !strings.Contains(n.Value, "$") {
			return nil
		}
		var missing, malformed []string
		out := envRef.ReplaceAllStringFunc(n.Value, func(m string) string {
			if m == "$$" {
				return "$"
			}
			name := strings.TrimSuffix(m[2:], "}")
			if !strings.HasSuffix(m, "}") || !envName.MatchString(name) {
				malformed = append(malformed, m)
				return m
			}
			v := getenv(name)
			if v == "" {
				missing = append(missing, name)
			}
			return v
		})
		if len(malformed) > 0 {
			return fmt.Errorf("%s: %q is not a ${NAME} reference (NAME: letters, digits, _); write $$ for a literal $", path, malformed[0])
		}
		if len(missing) > 0 {
			return &EnvError{Key: path, Missing: missing}
		}
		if out != n.Value {
			n.Value = out
			// An expanded value is a string whatever it looks like (a
			// secret of digits must not turn into a number), unless the
			// field it fills wants a number (checkNode).
			n.Tag = "!!str"
			expanded[n] = true
		}
	}
	return errors.Join(errs...)
}
