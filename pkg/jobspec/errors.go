package jobspec

import (
	"strconv"
	"strings"
)

// Error is one problem in a job file or its securities file.
type Error struct {
	Path         string // the file with the problem: the job file, or its securities_file
	Line, Column int    // 1-based; 0 when the problem has no single place (a missing key)
	Field        string // the job file key concerned, if any
	Reason       string
}

// Error formats the problem as path:line: field: reason, the form editors and CI logs link.
func (e *Error) Error() string {
	var b strings.Builder
	if e.Path != "" {
		b.WriteString(e.Path)
	} else {
		b.WriteString("job file")
	}
	if e.Line > 0 {
		b.WriteString(":")
		b.WriteString(strconv.Itoa(e.Line))
	}
	b.WriteString(": ")
	if e.Field != "" {
		b.WriteString(e.Field)
		b.WriteString(": ")
	}
	b.WriteString(e.Reason)
	return b.String()
}

// Errors is every problem found in a job file, in file order. Parse reports them all at once so
// that one edit fixes a file, rather than one edit per problem.
type Errors []*Error

// Error lists the problems, one a line.
func (es Errors) Error() string {
	lines := make([]string, len(es))
	for i, e := range es {
		lines[i] = e.Error()
	}
	return strings.Join(lines, "\n")
}

// Unwrap lets errors.As find each *Error.
func (es Errors) Unwrap() []error {
	out := make([]error, len(es))
	for i, e := range es {
		out[i] = e
	}
	return out
}
