package config

import (
	"fmt"
	"reflect"
	"strings"
	"text/tabwriter"
	"time"
)

// A settings struct declares each variable it reads in its field tags, so that reading it, -h,
// README's table and the deployment checks come from one declaration:
//
//	Interval time.Duration `env:"POLL_INTERVAL,positive" default:"30s" help:"time between two polls"`
//
// The options after the name: positive (a duration above zero), bytes (an int64 size such as
// 64MiB), lower (a string compared in lower case). oneof:"a b" lists a string's values; shown
// is the default as documented when the code computes it elsewhere. An int is a positive
// integer. A struct field without env is read as a group of its own.

// Var is one variable a settings struct reads.
type Var struct {
	Name    string
	Default string // as documented: the shown tag, else the default tag
	Help    string
}

// Vars lists the variables of settings (a struct or a pointer to one), in declaration order.
func Vars(settings any) []Var {
	var vars []Var
	walk(reflect.TypeOf(settings), func(f reflect.StructField, _ []int) {
		name, _, _ := strings.Cut(f.Tag.Get("env"), ",")
		def := f.Tag.Get("default")
		if s, ok := f.Tag.Lookup("shown"); ok {
			def = s
		}
		vars = append(vars, Var{Name: name, Default: def, Help: f.Tag.Get("help")})
	})
	return vars
}

// walk calls visit for each field with an env tag in t, descending into untagged structs.
func walk(t reflect.Type, visit func(f reflect.StructField, index []int)) {
	if t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	var rec func(t reflect.Type, index []int)
	rec = func(t reflect.Type, index []int) {
		for i := range t.NumField() {
			f := t.Field(i)
			idx := append(append([]int(nil), index...), i)
			tag, ok := f.Tag.Lookup("env")
			switch {
			case ok && tag != "-":
				visit(f, idx)
			case !ok && f.Type.Kind() == reflect.Struct && f.Type != reflect.TypeOf(time.Time{}):
				rec(f.Type, idx)
			}
		}
	}
	rec(t, nil)
}

// Read fills the struct dst points to from lookup, by its tags; an unset or empty variable
// takes its default. The error names the variable and its value.
func Read(lookup Lookup, dst any) error {
	v := reflect.ValueOf(dst)
	if v.Kind() != reflect.Pointer || v.Elem().Kind() != reflect.Struct {
		return fmt.Errorf("config.Read: want a pointer to a struct, got %T", dst)
	}
	var err error
	walk(v.Type(), func(f reflect.StructField, index []int) {
		if err == nil {
			err = readField(lookup, f, v.Elem().FieldByIndex(index))
		}
	})
	return err
}

func readField(lookup Lookup, f reflect.StructField, field reflect.Value) error {
	name, opts, _ := strings.Cut(f.Tag.Get("env"), ",")
	def := f.Tag.Get("default")
	value := func(key string) (string, bool) { return lookup(key) }
	if def != "" {
		// The default goes through the same parsing as a set value.
		value = func(key string) (string, bool) {
			if v, ok := lookup(key); ok && v != "" {
				return v, true
			}
			return def, true
		}
	}
	has := func(o string) bool { return strings.Contains(","+opts+",", ","+o+",") }
	switch {
	case f.Type == reflect.TypeOf(time.Duration(0)):
		read := Duration
		if has("positive") {
			read = PositiveDuration
		}
		d, err := read(value, name, 0)
		if err != nil {
			return err
		}
		field.SetInt(int64(d))
	case f.Type.Kind() == reflect.Int64 && has("bytes"):
		n, err := Bytes(value, name, 0)
		if err != nil {
			return err
		}
		field.SetInt(n)
	case f.Type.Kind() == reflect.Int:
		n, err := PositiveInt(value, name, 0)
		if err != nil {
			return err
		}
		field.SetInt(int64(n))
	case f.Type.Kind() == reflect.String:
		s, _ := value(name)
		if has("lower") {
			s = strings.ToLower(s)
		}
		if one := strings.Fields(f.Tag.Get("oneof")); len(one) > 0 && !contains(one, s) {
			return fmt.Errorf("%s=%q: want %s", name, s, orList(one))
		}
		field.SetString(s)
	default:
		return fmt.Errorf("%s: config cannot read a field of type %s", name, f.Type)
	}
	return nil
}

// CheckChoices reports the first string field of settings (a struct or a pointer to one) whose
// value is not one of its oneof tag's, such as one set by a flag after Read.
func CheckChoices(settings any) error {
	v := reflect.Indirect(reflect.ValueOf(settings))
	var err error
	walk(v.Type(), func(f reflect.StructField, index []int) {
		one := strings.Fields(f.Tag.Get("oneof"))
		if err != nil || len(one) == 0 {
			return
		}
		if s := v.FieldByIndex(index).String(); !contains(one, s) {
			name, _, _ := strings.Cut(f.Tag.Get("env"), ",")
			err = fmt.Errorf("%s=%q: want %s", name, s, orList(one))
		}
	})
	return err
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

// orList writes a, b or c.
func orList(l []string) string {
	if len(l) == 1 {
		return l[0]
	}
	return strings.Join(l[:len(l)-1], ", ") + " or " + l[len(l)-1]
}

// Help is the "Environment:" section of a -h: each variable with its help and default.
func Help(vars []Var) string {
	var b strings.Builder
	b.WriteString("\nEnvironment:\n")
	w := tabwriter.NewWriter(&b, 0, 8, 2, ' ', 0)
	for _, v := range vars {
		line := v.Help
		if v.Default != "" {
			line += " (default " + v.Default + ")"
		}
		fmt.Fprintf(w, "  %s\t%s\n", v.Name, line)
	}
	w.Flush()
	return b.String()
}

// Table is README's configuration table: each variable with its help and default.
func Table(vars []Var) string {
	var b strings.Builder
	b.WriteString("| variable | meaning | default |\n|---|---|---|\n")
	for _, v := range vars {
		def := v.Default
		if def == "" {
			def = "none"
		}
		fmt.Fprintf(&b, "| %s | %s | %s |\n", v.Name, v.Help, def)
	}
	return b.String()
}

// Prefixed returns vars with each help starting "service: ", for a table of several services.
func Prefixed(service string, vars []Var) []Var {
	out := make([]Var, len(vars))
	for i, v := range vars {
		v.Help = service + ": " + v.Help
		out[i] = v
	}
	return out
}
