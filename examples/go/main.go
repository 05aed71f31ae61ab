// Validate crmstream input events against the committed JSON Schemas before publishing them.
//
//	cd examples/go
//	go run . -schemas ../../schemas/json < ../events.jsonl
//
// Reads JSON lines {"topic": "crm.purchases", "event": {...}} and prints one JSON line per
// event: {"topic", "event_id", "valid", "errors"}. Exit code 1 if any event is invalid.
// An event the schemas in schemas/json/ accept is one the crmstream worker accepts
// (tests/integration/test_other_language_examples.py holds this program to it).
//
// The validator is github.com/xeipuuv/gojsonschema, which Debian packages
// (golang-github-xeipuuv-gojsonschema-dev). It implements drafts 4, 6 and 7, not 2020-12,
// so it is told to read the schemas as draft 7: they use only keywords that mean the same
// in both (type, properties, required, anyOf, not, enum, pattern, minimum/maximum,
// minLength/maxLength, items, $ref to #/$defs/...).
package main

import (
	"bufio"
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/xeipuuv/gojsonschema"
)

var schemaFiles = map[string]string{
	"crm.purchases": "purchase.json",
	"crm.chats":     "chat_message.json",
	"crm.feedback":  "feedback.json",
	"crm.customers": "customer_details.json",
}

// rfc3339 checks "format": "date-time" as RFC 3339 section 5.6 does: "T" and "Z" may be
// lower case, and the date must exist (no 2026-02-30). The schemas' pattern already
// fixes the shape; time.Parse checks the calendar. gojsonschema's own checker refuses a
// lower-case "t" that RFC 3339 and the worker accept.
type rfc3339 struct{}

func (rfc3339) IsFormat(input interface{}) bool {
	text, ok := input.(string)
	if !ok {
		return true // format applies to strings only; "type" says the rest
	}
	_, err := time.Parse(time.RFC3339Nano, strings.ToUpper(text))
	return err == nil
}

func load(dir string) (map[string]*gojsonschema.Schema, error) {
	gojsonschema.FormatCheckers.Add("date-time", rfc3339{})
	schemas := map[string]*gojsonschema.Schema{}
	for topic, file := range schemaFiles {
		text, err := os.ReadFile(filepath.Join(dir, file))
		if err != nil {
			return nil, err
		}
		loader := gojsonschema.NewSchemaLoader()
		loader.Draft = gojsonschema.Draft7
		loader.AutoDetect = false
		loader.Validate = true
		schema, err := loader.Compile(gojsonschema.NewBytesLoader(text))
		if err != nil {
			return nil, fmt.Errorf("%s: %w", file, err)
		}
		schemas[topic] = schema
	}
	return schemas, nil
}

type line struct {
	Topic string          `json:"topic"`
	Event json.RawMessage `json:"event"`
}

type verdict struct {
	Topic   string      `json:"topic"`
	EventID interface{} `json:"event_id"`
	Valid   bool        `json:"valid"`
	Errors  []string    `json:"errors"`
}

func check(schemas map[string]*gojsonschema.Schema, topic string, event []byte) []string {
	schema, ok := schemas[topic]
	if !ok {
		return []string{topic + " is not a crmstream input topic"}
	}
	result, err := schema.Validate(gojsonschema.NewBytesLoader(event))
	if err != nil {
		return []string{err.Error()}
	}
	errors := []string{}
	for _, e := range result.Errors() {
		errors = append(errors, e.String())
	}
	return errors
}

func main() {
	dir := flag.String("schemas", "schemas/json", "folder of crmstream's JSON Schemas")
	flag.Parse()
	schemas, err := load(*dir)
	if err != nil {
		fmt.Fprintln(os.Stderr, "validate:", err)
		os.Exit(2)
	}
	scanner := bufio.NewScanner(os.Stdin)
	scanner.Buffer(make([]byte, 1<<20), 1<<20)
	out := json.NewEncoder(os.Stdout)
	invalid := false
	for scanner.Scan() {
		if strings.TrimSpace(scanner.Text()) == "" {
			continue
		}
		var in line
		if err := json.Unmarshal(scanner.Bytes(), &in); err != nil {
			fmt.Fprintln(os.Stderr, "validate: not a JSON line:", err)
			os.Exit(2)
		}
		errors := check(schemas, in.Topic, in.Event)
		var fields map[string]interface{}
		var eventID interface{}
		if json.Unmarshal(in.Event, &fields) == nil {
			eventID = fields["event_id"]
		}
		invalid = invalid || len(errors) > 0
		if err := out.Encode(verdict{in.Topic, eventID, len(errors) == 0, errors}); err != nil {
			fmt.Fprintln(os.Stderr, "validate:", err)
			os.Exit(2)
		}
	}
	if err := scanner.Err(); err != nil {
		fmt.Fprintln(os.Stderr, "validate:", err)
		os.Exit(2)
	}
	if invalid {
		os.Exit(1)
	}
}
