// Package obs defines the normalized observation: one value of one field of one security on one
// date. It is what the reply-file reader produces, what row batches carry between the transformer
// and the loader, and what the loader stores in ClickHouse's observations table.
package obs

import (
	"encoding/json"
	"fmt"
	"math"
	"strconv"
	"time"
)

// Kind says which of an observation's value members is meaningful.
type Kind uint8

const (
	// Null is a marker or a blank cell: no value (Flag says which marker, if any).
	Null Kind = iota
	// Number is a numeric cell: Num holds it.
	Number
	// String is any other text: Str holds it.
	String
	// Bulk is a bulk (array) cell: Str holds a JSON array of rows, each row a JSON array.
	Bulk
)

func (k Kind) String() string {
	switch k {
	case Null:
		return "null"
	case Number:
		return "number"
	case String:
		return "string"
	case Bulk:
		return "bulk"
	}
	return "kind(" + strconv.Itoa(int(k)) + ")"
}

// Date is a civil date, counted in days since 1970-01-01 (the same unit as ClickHouse's Date).
type Date int32

// DateOf returns the civil date of t in t's location.
func DateOf(t time.Time) Date {
	y, m, d := t.Date()
	return Date(time.Date(y, m, d, 0, 0, 0, 0, time.UTC).Unix() / 86400)
}

// MakeDate returns the date y-m-d.
func MakeDate(y int, m time.Month, d int) Date {
	return Date(time.Date(y, m, d, 0, 0, 0, 0, time.UTC).Unix() / 86400)
}

// ParseDate parses YYYY-MM-DD.
func ParseDate(s string) (Date, error) {
	t, err := time.Parse("2006-01-02", s)
	if err != nil {
		return 0, fmt.Errorf("date %q: want YYYY-MM-DD", s)
	}
	return DateOf(t), nil
}

// Time returns midnight UTC of the date.
func (d Date) Time() time.Time { return time.Unix(int64(d)*86400, 0).UTC() }

// String formats the date as YYYY-MM-DD.
func (d Date) String() string { return d.Time().Format("2006-01-02") }

// Observation is one normalized value: what `marketpipe parse` prints (JSON) and the loader
// stores, keyed by security, field and date.
type Observation struct {
	Security string // trimmed identifier as requested
	Field    string // mnemonic; empty for a return-code record
	Date     Date
	Kind     Kind
	Num      float64 // when Kind == Number
	Str      string  // when Kind == String, or the JSON rows when Kind == Bulk
	Flag     string  // "", a marker as written (N.A., N.S., N.D., FLD UNKNOWN, BLANK), or RC=<code>
}

// Value returns the observation's value as it appears in JSON: float64, string, json.RawMessage
// (bulk rows) or nil.
func (o *Observation) Value() any {
	switch o.Kind {
	case Number:
		return o.Num
	case String:
		return o.Str
	case Bulk:
		return json.RawMessage(o.Str)
	}
	return nil
}

// Equal reports whether two observations are the same, treating NaN numbers as equal.
func (o *Observation) Equal(p *Observation) bool {
	if o.Security != p.Security || o.Field != p.Field || o.Date != p.Date || o.Kind != p.Kind ||
		o.Str != p.Str || o.Flag != p.Flag {
		return false
	}
	return o.Num == p.Num || (math.IsNaN(o.Num) && math.IsNaN(p.Num))
}

// Key identifies an observation in the observations table (its ORDER BY key).
type Key struct {
	Security, Field string
	Date            Date
}

// Key returns the observation's key.
func (o *Observation) Key() Key { return Key{o.Security, o.Field, o.Date} }

// Columns holds observations column by column, with each row's security, field and flag as an
// index into a list of the distinct values: the form in which row batches travel
// (pkg/rowcodec) and in which ClickHouse takes rows, so that a consumer going from one to the
// other builds no Observation per row. All columns have one entry per row.
type Columns struct {
	Securities, Fields, Flags []string // the distinct values
	Security, Field, Flag     []uint32 // row i's index into Securities, Fields and Flags
	Date                      []Date
	Kind                      []Kind
	Num                       []float64 // row i's value when Kind[i] == Number, else 0
	Str                       []string  // row i's value when Kind[i] is String or Bulk, else ""
}

// Len returns the number of rows.
func (c *Columns) Len() int { return len(c.Date) }

// Row returns row i as an Observation.
func (c *Columns) Row(i int) Observation {
	return Observation{Security: c.Securities[c.Security[i]], Field: c.Fields[c.Field[i]], Date: c.Date[i],
		Kind: c.Kind[i], Num: c.Num[i], Str: c.Str[i], Flag: c.Flags[c.Flag[i]]}
}

// ColumnsOf returns os column by column, each distinct security, field and flag listed once,
// in the order they first appear: how a program that has rows (a test, a script) hands them to
// a consumer of Columns.
func ColumnsOf(os []Observation) *Columns {
	c := &Columns{}
	index := func(list *[]string, idx map[string]uint32, v string) uint32 {
		i, ok := idx[v]
		if !ok {
			i = uint32(len(*list))
			idx[v] = i
			*list = append(*list, v)
		}
		return i
	}
	secs, fields, flags := map[string]uint32{}, map[string]uint32{}, map[string]uint32{}
	for i := range os {
		o := &os[i]
		c.Security = append(c.Security, index(&c.Securities, secs, o.Security))
		c.Field = append(c.Field, index(&c.Fields, fields, o.Field))
		c.Flag = append(c.Flag, index(&c.Flags, flags, o.Flag))
		c.Date = append(c.Date, o.Date)
		c.Kind = append(c.Kind, o.Kind)
		num, str := o.Num, o.Str
		switch o.Kind {
		case Number:
			str = ""
		case String, Bulk:
			num = 0
		default:
			num, str = 0, ""
		}
		c.Num = append(c.Num, num)
		c.Str = append(c.Str, str)
	}
	return c
}

// Rows returns c's rows as observations.
func (c *Columns) Rows() []Observation {
	os := make([]Observation, c.Len())
	for i := range os {
		os[i] = c.Row(i)
	}
	return os
}

// Reject is an input line that could not be turned into observations.
type Reject struct {
	Line   int64  // 1-based line number in the reply file
	Raw    string // the line as read (without its line ending)
	Reason string
}

// JSON is the JSON Lines form of an observation (what `marketpipe parse` prints).
type JSON struct {
	Security string `json:"security"`
	Field    string `json:"field"`
	Date     string `json:"date"`
	Value    any    `json:"value"`
	Flag     string `json:"flag"`
	Program  string `json:"program"`
	JobID    string `json:"job_id,omitempty"`
}

// ToJSON returns the JSON form of o, for the given program and job id.
func (o *Observation) ToJSON(program, jobID string) JSON {
	return JSON{Security: o.Security, Field: o.Field, Date: o.Date.String(), Value: o.Value(),
		Flag: o.Flag, Program: program, JobID: jobID}
}
