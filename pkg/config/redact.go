package config

import "strings"

// Redacted replaces a secret in what RedactURL and RedactError return.
const Redacted = "xxxxx"

// RedactURL returns s, a URL or a comma-separated list of URLs such as NATS_URL, with the
// secret of each one's userinfo replaced: the password of user:password@, and the whole of
// token@ (NATS takes a lone user name as a token). It works on the text, so a URL that does
// not parse is redacted too; use it for every URL that reaches a log line, an error or output.
func RedactURL(s string) string {
	if !strings.Contains(s, "@") {
		return s
	}
	parts := strings.Split(s, ",")
	for i, p := range parts {
		parts[i] = redactOne(p)
	}
	return strings.Join(parts, ",")
}

// RedactError returns err with the secrets of urls (each a URL or a comma-separated list, as
// RedactURL takes) removed from its message, for errors of libraries that quote the URL they
// were given. errors.Is and errors.As still see err; nil stays nil.
func RedactError(err error, urls ...string) error {
	if err == nil {
		return nil
	}
	msg := err.Error()
	redacted := msg
	for _, list := range urls {
		for _, u := range strings.Split(list, ",") {
			u = strings.TrimSpace(u)
			secret, ok := secretOf(u)
			if !ok {
				continue
			}
			redacted = strings.ReplaceAll(redacted, u, redactOne(u))
			// The URL may be quoted with escapes (%q) or cut: what is left of its secret goes
			// too (a very short one would only garble the message, and is no real secret).
			if len(secret) >= 3 {
				redacted = strings.ReplaceAll(redacted, secret, Redacted)
			}
		}
	}
	if redacted == msg {
		return err
	}
	return &redactedError{msg: redacted, err: err}
}

type redactedError struct {
	msg string
	err error
}

func (e *redactedError) Error() string { return e.msg }
func (e *redactedError) Unwrap() error { return e.err }

func redactOne(u string) string {
	start, at, ok := userinfoSpan(u)
	if !ok {
		return u
	}
	info := Redacted
	if user, _, hasPassword := strings.Cut(u[start:at], ":"); hasPassword {
		info = user + ":" + Redacted
	}
	return u[:start] + info + u[at:]
}

// secretOf returns the secret of u's userinfo: the password, or the token when there is no
// password.
func secretOf(u string) (string, bool) {
	start, at, ok := userinfoSpan(u)
	if !ok {
		return "", false
	}
	if _, pw, hasPassword := strings.Cut(u[start:at], ":"); hasPassword {
		return pw, true
	}
	return u[start:at], true
}

// userinfoSpan finds u's userinfo, u[start:at], with or without a scheme. The authority ends
// at the path, query or fragment; the userinfo at its last '@' (a password may hold an '@'
// that was not percent-encoded).
func userinfoSpan(u string) (start, at int, ok bool) {
	if i := strings.Index(u, "://"); i >= 0 {
		start = i + len("://")
	}
	end := len(u)
	if i := strings.IndexAny(u[start:], "/?#"); i >= 0 {
		end = start + i
	}
	at = strings.LastIndex(u[start:end], "@")
	if at < 0 {
		return 0, 0, false
	}
	return start, start + at, true
}
