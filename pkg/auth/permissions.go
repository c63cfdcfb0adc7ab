package auth

import (
	"slices"

	"github.com/nats-io/jwt/v2"

	"github.com/marketpipe/marketpipe/pkg/natsx"
)

// JetStream API subjects (see NATS's JetStream wire API reference).
const (
	api          = "$JS.API."
	apiAll       = "$JS.API.>"
	streamInfo   = api + "STREAM.INFO."
	streamNames  = api + "STREAM.NAMES"
	streamMsgGet = api + "STREAM.MSG.GET."
	streamPurge  = api + "STREAM.PURGE."
	directGet    = api + "DIRECT.GET."
	consCreate   = api + "CONSUMER.CREATE."
	consDurable  = api + "CONSUMER.DURABLE.CREATE."
	consDelete   = api + "CONSUMER.DELETE."
	consInfo     = api + "CONSUMER.INFO."
	consNext     = api + "CONSUMER.MSG.NEXT."
	ackPrefix    = "$JS.ACK."
)

// Permissions returns identity id's publish and subscribe permissions. all are every identity
// of the deployment: no identity but the admin may create, update or delete a durable consumer,
// and none may pull from another's.
func Permissions(id Identity, all []Identity) jwt.Permissions {
	inbox := natsx.InboxPrefix(id.Name) + ".>"
	if id.Admin {
		return jwt.Permissions{
			Pub: jwt.Permission{Allow: jwt.StringList{">"}},
			Sub: jwt.Permission{Allow: jwt.StringList{">"}},
		}
	}
	u := id.Uses.Runtime()
	var allow, deny jwt.StringList
	// Binding a stream, bucket or object store reads its info (configuration and counters, not
	// its content); a publish refused because a stream is full asks which stream it was.
	allow.Add(streamInfo + "*")
	allow.Add(streamNames)
	own := map[string]bool{}
	for _, c := range u.Consumers {
		own[c.Stream+"."+c.Name] = true
		allow.Add(consInfo+c.Stream+"."+c.Name, consNext+c.Stream+"."+c.Name)
		allow.Add(acks(c.Stream, c.Name)...)
	}
	allow.Add(u.Publishes...)
	reads := slices.Clone(u.Reads)
	for _, b := range append(slices.Clone(u.KVRead), u.KVWrite...) {
		reads = append(reads, natsx.KVStream(b))
	}
	for _, b := range append(slices.Clone(u.ObjRead), u.ObjWrite...) {
		reads = append(reads, natsx.ObjectStream(b))
	}
	for _, s := range reads {
		allow.Add(streamMsgGet+s, directGet+s, directGet+s+".>",
			consCreate+s+".>", consInfo+s+".*", consNext+s+".*", consDelete+s+".*")
	}
	for _, b := range u.KVWrite {
		allow.Add("$KV." + b + ".>")
	}
	for _, b := range u.ObjWrite {
		// Replacing or deleting an object purges its old chunks.
		allow.Add("$O."+b+".>", streamPurge+natsx.ObjectStream(b))
	}
	// The durable consumers are the admin's: no other identity creates, changes or deletes
	// one, and each pulls from its own only (the reads above allow any on their streams).
	for _, other := range all {
		for _, c := range other.Uses.Consumers {
			if !slices.Contains(reads, c.Stream) {
				continue // nothing above allows it
			}
			sc := c.Stream + "." + c.Name
			deny.Add(consCreate+sc, consCreate+sc+".>", consDurable+sc, consDelete+sc)
			if !own[sc] {
				deny.Add(consNext + sc)
			}
		}
	}
	slices.Sort(allow)
	slices.Sort(deny)
	return jwt.Permissions{
		Pub: jwt.Permission{Allow: allow, Deny: deny},
		// Replies to its requests and publishes, and the messages its pulls deliver: its own
		// inboxes only (natsx.Connect takes them from the credentials' identity).
		Sub: jwt.Permission{Allow: jwt.StringList{inbox}},
	}
}

// acks are the subjects of the acknowledgements of a consumer's messages: the server's first
// form ($JS.ACK.<stream>.<consumer>...) and the one with a domain and an account hash.
func acks(stream, consumer string) []string {
	return []string{ackPrefix + stream + "." + consumer + ".>", ackPrefix + "*.*." + stream + "." + consumer + ".>"}
}
