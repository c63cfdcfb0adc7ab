package vendor

import (
	"bytes"
	"crypto/sha512"
	"encoding/base64"
	"strings"
	"testing"
)

// FuzzParseListing: any listing either fails to decode or gives files that each have a key and
// a size that is a size or -1 (not listed).
func FuzzParseListing(f *testing.F) {
	f.Add([]byte(`{"@type":"ResponseList","contains":[{"@type":"Response","key":"r1.20260105.bbg",` +
		`"headers":{"Content-Type":"text/vnd.blp.dl.std","Content-Length":"123","Last-Modified":"Mon, 05 Jan 2026 18:00:00 GMT",` +
		`"Digest":"sha512=AAAA"},"metadata":{"DL_REQUEST_ID":"r1","DL_REQUEST_TYPE":"DataRequest"}}]}`))
	f.Add([]byte(`{"contains":[{"key":"a","headers":{"content-length":42}},{"key":""},{"headers":{}}]}`))
	f.Add([]byte(`{"contains":[{"key":"a","headers":{"Content-Length":"-5"}}]}`))
	f.Add([]byte(`{"contains":[]}`))
	f.Add([]byte(`{"contains":null}`))
	f.Add([]byte(`[`))
	f.Fuzz(func(t *testing.T, data []byte) {
		outs, err := parseListing(bytes.NewReader(data))
		if err != nil {
			if outs != nil || !strings.HasPrefix(err.Error(), "decode listing: ") {
				t.Fatalf("parseListing = %v, %v", outs, err)
			}
			return
		}
		for _, o := range outs {
			if o.Key == "" || o.ContentLength < -1 || o.Metadata == nil {
				t.Fatalf("listed file %+v", o)
			}
		}
	})
}

// FuzzParseDigest: a digest is accepted only as 64 bytes, which read back the same when
// written the canonical way.
func FuzzParseDigest(f *testing.F) {
	sum := sha512.Sum512([]byte("file"))
	b64 := base64.StdEncoding.EncodeToString(sum[:])
	for _, s := range []string{"sha512=" + b64, "SHA-512=" + b64, "md5=abc, sha-512=" + b64, "sha512=", "sha256=abc", "", "sha512=%%%"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		got, err := parseDigest(s)
		if err != nil {
			if got != nil || !strings.HasPrefix(err.Error(), "digest ") {
				t.Fatalf("parseDigest(%q) = %x, %v", s, got, err)
			}
			return
		}
		if len(got) != sha512.Size {
			t.Fatalf("parseDigest(%q): %d bytes", s, len(got))
		}
		again, err := parseDigest("sha512=" + base64.StdEncoding.EncodeToString(got))
		if err != nil || !bytes.Equal(again, got) {
			t.Fatalf("parseDigest(%q) = %x; written back: %x, %v", s, got, again, err)
		}
	})
}

// FuzzNotificationStream: any stream gives events whose data stays within MaxEventData, and a
// notification handed over has a valid request identifier, a sha512 digest and a time.
func FuzzNotificationStream(f *testing.F) {
	f.Add([]byte("id: 1\nevent: DistributionPublished\ndata: {\"endedAtTime\":\"2026-01-05T18:00:00Z\"," +
		"\"generated\":{\"@id\":\"/eap/x\",\"identifier\":\"r1.20260105.bbg\",\"digest\":{\"digestAlgorithm\":\"SHA512\"," +
		"\"digestValue\":\"" + strings.Repeat("ab", 64) + "\"}}}\n\n"))
	f.Add([]byte(": comment\r\nevent: heartbeat\r\ndata:\r\n\r\nid: 2\n\n"))
	f.Add([]byte("data: a\ndata: b\nid: \x00\n\n"))
	f.Add([]byte("event: DistributionPublished\ndata: {\"generated\":{\"identifier\":\"../x\"}}\n\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		err := readEvents(bytes.NewReader(data), func() {}, func(e sseEvent) error {
			if len(e.data) > MaxEventData {
				t.Fatalf("event data of %d bytes", len(e.data))
			}
			if strings.ContainsRune(e.id, 0) {
				t.Fatalf("id %q with NUL", e.id)
			}
			if e.name == EventDistributionPublished {
				n, err := parseNotification(e.id, e.data)
				if err == nil && (!ValidIdentifier(n.RequestIdentifier()) || !strings.HasPrefix(n.Digest, "sha512=") || n.EndedAt.IsZero()) {
					t.Fatalf("accepted %+v", n)
				}
			}
			return nil
		})
		if err == nil {
			t.Fatal("readEvents returned nil: a stream always ends with an error")
		}
	})
}
