package main

// The config file of `longlink serve --config FILE`: the lowest layer under flags and
// the environment. Its format follows the extension: .toml, .yaml/.yml and .json are
// structured (typed values, arrays for repeatable flags, tables that group flags by
// their prefix), anything else is the original `name = value` line format, so the
// files written before the structured formats existed keep working as they are.
// Every format names a setting by its flag name; '_' may stand for '-'. An unknown
// setting, a value of the wrong type and a setting given twice stop the start with
// the file, line and column, and an unknown one with the nearest known name.

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	toml "github.com/pelletier/go-toml/v2"
	"github.com/pelletier/go-toml/v2/unstable"
	yaml "go.yaml.in/yaml/v3"
)

// maxConfigBytes bounds what --config reads: a config file is a few kilobytes, and a
// wrong path (a log, a device) must not be read into memory whole.
const maxConfigBytes = 4 << 20

// badValue stands for a value no flag takes (a table in an array, an array of
// tables), so the type check refuses it with these words.
type badValue string

// configEntry is one setting read from a structured file, before it is checked
// against the flags.
type configEntry struct {
	path      []string // as written: the enclosing tables' names, then the key
	line, col int
	val       any // string, int64, float64, bool, nil or []any of those
}

// applyConfig reads the config file name and sets every flag it names that is not
// in given (set by a flag or the environment, which take precedence).
func applyConfig(fs *flag.FlagSet, name string, given map[string]bool) error {
	f, err := os.Open(name)
	if err != nil {
		return fmt.Errorf("config file: %w", err)
	}
	defer f.Close()
	data, err := io.ReadAll(io.LimitReader(f, maxConfigBytes+1))
	if err != nil {
		return fmt.Errorf("config file: %w", err)
	}
	if len(data) > maxConfigBytes {
		return fmt.Errorf("config file %s: larger than %d bytes; is it the right file?", name, maxConfigBytes)
	}
	var entries []configEntry
	switch strings.ToLower(filepath.Ext(name)) {
	case ".toml":
		entries, err = tomlEntries(data)
	case ".yaml", ".yml":
		entries, err = yamlEntries(data)
	case ".json":
		entries, err = jsonEntries(data)
	default:
		return applyConfigLines(fs, bytes.NewReader(data), name, given)
	}
	if err != nil {
		return fmt.Errorf("%s:%w", name, err)
	}
	return applyConfigEntries(fs, name, entries, given)
}

// applyConfigLines reads the line format: `name = value` per line, `#` comments,
// surrounding double quotes dropped, list flags comma-separated (';' between the
// specs of --pusher-app and --business), a repeated list line appending.
func applyConfigLines(fs *flag.FlagSet, r io.Reader, name string, given map[string]bool) error {
	sc := bufio.NewScanner(r)
	line := 0
	for sc.Scan() {
		line++
		text := strings.TrimSpace(sc.Text())
		if text == "" || strings.HasPrefix(text, "#") {
			continue
		}
		k, v, ok := strings.Cut(text, "=")
		if !ok {
			return fmt.Errorf("%s:%d: want `name = value`, got %q", name, line, text)
		}
		written := strings.TrimSpace(k)
		k, v = configName(written), strings.Trim(strings.TrimSpace(v), `"`)
		if configFlag(fs, k) == nil {
			return fmt.Errorf("%s:%d: %s", name, line, unknownSetting(fs, written, k))
		}
		if given[k] {
			continue
		}
		if err := fs.Set(k, v); err != nil {
			return fmt.Errorf("%s:%d: %s: invalid value %s: %w", name, line, k, shownValue(k, v), err)
		}
	}
	return sc.Err()
}

// applyConfigEntries checks every entry of a structured file (all of them, also those
// a flag or the environment overrides: the file is wrong either way) and sets the flags
// not in given. All the errors are reported at once, in the file's order.
func applyConfigEntries(fs *flag.FlagSet, file string, entries []configEntry, given map[string]bool) error {
	slices.SortStableFunc(entries, func(a, b configEntry) int {
		if a.line != b.line {
			return a.line - b.line
		}
		return a.col - b.col
	})
	seen := map[string]configEntry{}
	var errs []error
	for _, e := range entries {
		written := strings.Join(e.path, ".")
		name := configName(strings.Join(e.path, "-"))
		at := fmt.Sprintf("%s:%d:%d", file, e.line, e.col)
		f := configFlag(fs, name)
		if f == nil {
			errs = append(errs, fmt.Errorf("%s: %s", at, unknownSetting(fs, written, name)))
			continue
		}
		if prev, dup := seen[name]; dup {
			errs = append(errs, fmt.Errorf("%s: %s is set twice (also at %d:%d)", at, name, prev.line, prev.col))
			continue
		}
		seen[name] = e
		vals, err := configValues(f, e.val, holdsSecret(name))
		if err != nil {
			errs = append(errs, fmt.Errorf("%s: %s: %w", at, name, err))
			continue
		}
		if given[name] {
			continue
		}
		if kindOf(f) == kindEvents {
			vals = []string{strings.Join(vals, ",")} // --webhook-events replaces on each Set
		}
		for _, v := range vals {
			if err := fs.Set(name, v); err != nil {
				errs = append(errs, fmt.Errorf("%s: %s: invalid value %s: %w", at, name, shownValue(name, v), err))
				break
			}
		}
	}
	return errors.Join(errs...)
}

// holdsSecret says whether a flag's value may hold a secret, which errors leave out
// (the specs of --pusher-app and --business carry theirs).
func holdsSecret(name string) bool {
	return secretFlags[name] || name == "pusher-app" || name == "business"
}

// shownValue is v for an error message, unless it may hold a secret.
func shownValue(name, v string) string {
	if holdsSecret(name) {
		return "(not shown: it holds a secret)"
	}
	return strconv.Quote(v)
}

// configName is the flag a file's key names: '_' may stand for '-' (as in the
// environment's LONGLINK_MAX_CONNS), and a key is case-sensitive like a flag.
func configName(key string) string { return strings.ReplaceAll(key, "_", "-") }

// configFlag is the flag a config file may set under name, or nil: --config and
// --print-config only make sense on the command line.
func configFlag(fs *flag.FlagSet, name string) *flag.Flag {
	if name == "config" || name == "print-config" {
		return nil
	}
	return fs.Lookup(name)
}

// unknownSetting words an unknown key with the nearest known flag name.
func unknownSetting(fs *flag.FlagSet, written, name string) string {
	if name == "config" || name == "print-config" {
		return fmt.Sprintf("%q cannot be set in a config file (give it on the command line)", written)
	}
	best, bestD := "", 1<<30
	fs.VisitAll(func(f *flag.Flag) {
		if configFlag(fs, f.Name) == nil {
			return
		}
		d := editDistance(name, f.Name)
		if strings.HasPrefix(f.Name, name+"-") || strings.HasPrefix(name, f.Name+"-") {
			d = min(d, 2) // "ping" for "ping-interval", "webhook-url-list" for "webhook-url"
		}
		if d < bestD || (d == bestD && f.Name < best) {
			best, bestD = f.Name, d
		}
	})
	if best != "" && bestD <= max(2, len(name)/2) {
		return fmt.Sprintf("unknown setting %q; did you mean %q?", written, best)
	}
	return fmt.Sprintf("unknown setting %q (the settings are the flags `longlink serve -h` lists, without the dashes)", written)
}

// editDistance is the Levenshtein distance of a and b (insert, delete, substitute).
func editDistance(a, b string) int {
	prev := make([]int, len(b)+1)
	cur := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
		}
		prev, cur = cur, prev
	}
	return prev[len(b)]
}

// flagKind is what type of value a structured file must give a flag.
type flagKind int

const (
	kindString flagKind = iota
	kindBool
	kindInt
	kindFloat
	kindDuration
	kindList   // a string or an array of strings; each element is one Set
	kindEvents // a list whose flag replaces on Set: the elements are joined
)

func kindOf(f *flag.Flag) flagKind {
	switch f.Value.(type) {
	case *setList, *businessFlag, *pusherAppFlag:
		return kindList
	case eventsFlag:
		return kindEvents
	}
	g, ok := f.Value.(flag.Getter)
	if !ok {
		return kindString
	}
	switch g.Get().(type) {
	case bool:
		return kindBool
	case int, int64, uint, uint64:
		return kindInt
	case float64:
		return kindFloat
	case time.Duration:
		return kindDuration
	}
	return kindString
}

// configValues checks a value's type against its flag and words it as the flag's
// Set takes it.
func configValues(f *flag.Flag, v any, secret bool) ([]string, error) {
	describe := func(v any) string { return describe(v, secret) }
	switch k := kindOf(f); k {
	case kindList, kindEvents:
		switch x := v.(type) {
		case string:
			return []string{x}, nil
		case []any:
			if len(x) == 0 {
				return []string{""}, nil // as the flag given "": the default list is replaced by none
			}
			out := make([]string, len(x))
			for i, el := range x {
				s, ok := el.(string)
				if !ok {
					return nil, fmt.Errorf("element %d: want a string, got %s", i+1, describe(el))
				}
				out[i] = s
			}
			return out, nil
		}
		return nil, fmt.Errorf("want a string or an array of strings, got %s", describe(v))
	case kindBool:
		if b, ok := v.(bool); ok {
			return []string{strconv.FormatBool(b)}, nil
		}
		return nil, fmt.Errorf("want true or false, got %s", describe(v))
	case kindInt:
		if n, ok := v.(int64); ok {
			return []string{strconv.FormatInt(n, 10)}, nil
		}
		return nil, fmt.Errorf("want an integer, got %s", describe(v))
	case kindFloat:
		switch n := v.(type) {
		case int64:
			return []string{strconv.FormatInt(n, 10)}, nil
		case float64:
			return []string{strconv.FormatFloat(n, 'g', -1, 64)}, nil
		}
		return nil, fmt.Errorf("want a number, got %s", describe(v))
	case kindDuration:
		if s, ok := v.(string); ok {
			if _, err := time.ParseDuration(s); err != nil {
				return nil, fmt.Errorf("want a duration such as \"30s\" or \"1m30s\", got %q", s)
			}
			return []string{s}, nil
		}
		return nil, fmt.Errorf("want a duration as a string such as \"30s\" or \"1m30s\", got %s", describe(v))
	default:
		if s, ok := v.(string); ok {
			return []string{s}, nil
		}
		return nil, fmt.Errorf("want a string (quote it), got %s", describe(v))
	}
}

// describe names a value's type for an error, with the value unless it may be a
// secret.
func describe(v any, secret bool) string {
	if secret {
		switch v.(type) {
		case string, int64, float64, bool:
			return fmt.Sprintf("%s (the value is not shown: a secret)", map[string]string{"string": "a string", "int64": "an integer", "float64": "a number", "bool": "a boolean"}[fmt.Sprintf("%T", v)])
		}
	}
	switch x := v.(type) {
	case nil:
		return "no value"
	case string:
		return fmt.Sprintf("the string %q", x)
	case int64:
		return fmt.Sprintf("the integer %d", x)
	case float64:
		return fmt.Sprintf("the number %v", x)
	case bool:
		return fmt.Sprintf("the boolean %v", x)
	case []any:
		return fmt.Sprintf("an array of %d", len(x))
	case map[string]any:
		return "a table"
	case badValue:
		return string(x)
	}
	return fmt.Sprintf("%T %v", v, v)
}

// scalar normalises a decoded value to the types configValues knows.
func scalar(v any) any {
	switch x := v.(type) {
	case int:
		return int64(x)
	case uint64:
		if x > 1<<63-1 {
			return float64(x)
		}
		return int64(x)
	case json.Number:
		if n, err := x.Int64(); err == nil {
			return n
		}
		f, _ := x.Float64()
		return f
	case []any:
		out := make([]any, len(x))
		for i := range x {
			out[i] = scalar(x[i])
		}
		return out
	}
	return v
}

// tomlEntries decodes a TOML file (the whole TOML 1.0 grammar, through go-toml) and
// flattens its tables: [webhook] url = "..." is webhook-url. The positions of the keys
// come from a second pass of go-toml's parser, which keeps them.
func tomlEntries(data []byte) ([]configEntry, error) {
	var doc map[string]any
	if err := toml.Unmarshal(data, &doc); err != nil {
		if de, ok := errors.AsType[*toml.DecodeError](err); ok {
			line, col := de.Position()
			return nil, fmt.Errorf("%d:%d: %v (TOML quotes strings and durations: api-addr = \":8081\"; a file of unquoted `name = value` lines keeps working under another extension, such as .conf)", line, col, err)
		}
		return nil, fmt.Errorf(" %v", err)
	}
	pos := tomlPositions(data)
	var out []configEntry
	var flatten func(path []string, v any)
	flatten = func(path []string, v any) {
		if m, ok := v.(map[string]any); ok {
			for k, x := range m {
				flatten(append(slices.Clone(path), k), x)
			}
			return
		}
		e := configEntry{path: path, val: scalar(v), line: 1, col: 1}
		if arr, ok := v.([]any); ok && len(arr) > 0 {
			if _, tables := arr[0].(map[string]any); tables {
				e.val = badValue("an array of tables") // refused by its type, at its line
			}
		}
		for p := path; len(p) > 0; p = p[:len(p)-1] { // the key, else its table
			if at, ok := pos[strings.Join(p, "\x00")]; ok {
				e.line, e.col = at.Line, at.Column
				break
			}
		}
		out = append(out, e)
	}
	flatten(nil, doc)
	return out, nil
}

// tomlPositions maps each key path (parts joined by NUL) of a TOML document that
// toml.Unmarshal accepted to where its key starts.
func tomlPositions(data []byte) map[string]unstable.Position {
	pos := map[string]unstable.Position{}
	var p unstable.Parser
	p.Reset(data)
	keyOf := func(it unstable.Iterator) (parts []string, first *unstable.Node) {
		for it.Next() {
			if first == nil {
				first = it.Node()
			}
			parts = append(parts, string(it.Node().Data))
		}
		return parts, first
	}
	var keyval func(prefix []string, kv *unstable.Node)
	keyval = func(prefix []string, kv *unstable.Node) {
		parts, first := keyOf(kv.Key())
		path := append(slices.Clone(prefix), parts...)
		if first != nil {
			pos[strings.Join(path, "\x00")] = p.Shape(first.Raw).Start
		}
		if v := kv.Value(); v.Kind == unstable.InlineTable {
			for it := v.Children(); it.Next(); {
				if it.Node().Kind == unstable.KeyValue {
					keyval(path, it.Node())
				}
			}
		}
	}
	var table []string
	for p.NextExpression() {
		e := p.Expression()
		switch e.Kind {
		case unstable.Table, unstable.ArrayTable:
			var first *unstable.Node
			table, first = keyOf(e.Key())
			if first != nil {
				pos[strings.Join(table, "\x00")] = p.Shape(first.Raw).Start
			}
		case unstable.KeyValue:
			keyval(table, e)
		}
	}
	return pos
}

// yamlEntries reads one YAML document whose top is a mapping; nested mappings group
// flags by prefix (webhook: {url: ...} is webhook-url) and sequences are lists.
func yamlEntries(data []byte) ([]configEntry, error) {
	dec := yaml.NewDecoder(bytes.NewReader(data))
	var doc yaml.Node
	if err := dec.Decode(&doc); err != nil {
		if errors.Is(err, io.EOF) {
			return nil, nil // an empty file sets nothing
		}
		return nil, fmt.Errorf(" %v", err)
	}
	var more yaml.Node
	if err := dec.Decode(&more); !errors.Is(err, io.EOF) {
		return nil, fmt.Errorf("%d:%d: one YAML document only (a second one starts here)", more.Line, more.Column)
	}
	root := &doc
	if root.Kind == yaml.DocumentNode && len(root.Content) == 1 {
		root = root.Content[0]
	}
	if root.Kind != yaml.MappingNode {
		return nil, fmt.Errorf("%d:%d: want a mapping of `setting: value` at the top", root.Line, root.Column)
	}
	var out []configEntry
	var walk func(path []string, m *yaml.Node) error
	walk = func(path []string, m *yaml.Node) error {
		for i := 0; i+1 < len(m.Content); i += 2 {
			k, v := m.Content[i], m.Content[i+1]
			if k.Kind != yaml.ScalarNode || k.Value == "<<" {
				return fmt.Errorf("%d:%d: want a setting's name as the key (merge keys and complex keys are not supported)", k.Line, k.Column)
			}
			if v.Kind == yaml.AliasNode {
				v = v.Alias
			}
			p := append(slices.Clone(path), k.Value)
			e := configEntry{path: p, line: k.Line, col: k.Column}
			switch v.Kind {
			case yaml.MappingNode:
				if err := walk(p, v); err != nil {
					return err
				}
				continue
			case yaml.SequenceNode:
				arr := make([]any, len(v.Content))
				for j, el := range v.Content {
					var x any
					if el.Kind == yaml.ScalarNode {
						if err := el.Decode(&x); err != nil {
							return fmt.Errorf("%d:%d: %v", el.Line, el.Column, err)
						}
					} else {
						x = badValue("a nested " + map[yaml.Kind]string{yaml.MappingNode: "mapping", yaml.SequenceNode: "sequence"}[el.Kind])
					}
					arr[j] = scalar(x)
				}
				e.val = arr
			default:
				var x any
				if err := v.Decode(&x); err != nil {
					return fmt.Errorf("%d:%d: %v", v.Line, v.Column, err)
				}
				e.val = scalar(x)
			}
			out = append(out, e)
		}
		return nil
	}
	if err := walk(nil, root); err != nil {
		return nil, err
	}
	return out, nil
}

// jsonEntries reads one JSON object; nested objects group flags by prefix and arrays
// are lists. encoding/json keeps no positions, so each key's is found from the
// decoder's offset.
func jsonEntries(data []byte) ([]configEntry, error) {
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.UseNumber()
	at := func(off int64) (line, col int) {
		before := data[:min(int(off), len(data))]
		line = bytes.Count(before, []byte("\n")) + 1
		return line, len(before) - bytes.LastIndexByte(before, '\n')
	}
	wrap := func(err error) error {
		off := dec.InputOffset()
		if se, ok := errors.AsType[*json.SyntaxError](err); ok {
			off = se.Offset
		}
		if errors.Is(err, io.EOF) {
			err = errors.New("unexpected end of JSON")
		}
		line, col := at(off)
		return fmt.Errorf("%d:%d: %v", line, col, err)
	}
	var out []configEntry
	var object func(path []string) error
	object = func(path []string) error {
		for dec.More() {
			start := dec.InputOffset()
			tok, err := dec.Token()
			if err != nil {
				return wrap(err)
			}
			for start < int64(len(data)) && strings.IndexByte(" \t\r\n,", data[start]) >= 0 {
				start++
			}
			p := append(slices.Clone(path), tok.(string)) // inside an object, Token gives keys as strings
			e := configEntry{path: p}
			e.line, e.col = at(start)
			tok, err = dec.Token()
			if err != nil {
				return wrap(err)
			}
			switch tok {
			case json.Delim('{'):
				if err := object(p); err != nil {
					return err
				}
				continue
			case json.Delim('['):
				arr := []any{}
				for dec.More() {
					var x any
					if err := dec.Decode(&x); err != nil {
						return wrap(err)
					}
					if _, ok := x.(map[string]any); ok {
						x = badValue("an object")
					}
					arr = append(arr, scalar(x))
				}
				if _, err := dec.Token(); err != nil {
					return wrap(err)
				}
				e.val = arr
			default:
				e.val = scalar(tok)
			}
			out = append(out, e)
		}
		_, err := dec.Token() // the closing brace
		if err != nil {
			return wrap(err)
		}
		return nil
	}
	tok, err := dec.Token()
	if errors.Is(err, io.EOF) {
		return nil, nil // an empty file sets nothing
	}
	if err != nil {
		return nil, wrap(err)
	}
	if tok != json.Delim('{') {
		return nil, fmt.Errorf("1:1: want an object {\"setting\": value, ...} at the top")
	}
	if err := object(nil); err != nil {
		return nil, err
	}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		line, col := at(dec.InputOffset())
		return nil, fmt.Errorf("%d:%d: one JSON object only", line, col)
	}
	return out, nil
}
