package chinsert

import (
	"context"
	"errors"
	"sync"
	"time"
)

// maxIdle is how long a connection may sit in a Pool unused before it is closed rather than
// reused: well under the idle timeouts of servers and the middleboxes between.
const maxIdle = 30 * time.Second

// Pool keeps idle connections for reuse. It is safe for concurrent use.
type Pool struct {
	cfg  Config
	max  int // idle connections kept at most
	mu   sync.Mutex
	idle []*Conn
}

// NewPool returns a pool of connections made with cfg, keeping up to maxIdle of them idle.
func NewPool(cfg Config, maxIdleConns int) *Pool {
	cfg.defaults()
	return &Pool{cfg: cfg, max: max(maxIdleConns, 1)}
}

// Insert starts an INSERT (Conn.Insert) on an idle connection, or on a new one. When a reused
// connection fails before the server has accepted the INSERT (it had been closed on the
// server's side, say), the INSERT starts again on a new connection. Give the connection back
// with Put once the INSERT is finished or abandoned.
func (p *Pool) Insert(ctx context.Context, query string, cols []Column) (*Conn, *Insert, error) {
	for {
		c, reused := p.get()
		if c == nil {
			var err error
			if c, err = Dial(ctx, p.cfg); err != nil {
				return nil, nil, err
			}
		}
		ins, err := c.Insert(ctx, query, cols)
		if err == nil {
			return c, ins, nil
		}
		c.Close()
		if !reused || ctx.Err() != nil || isException(err) {
			return nil, nil, err
		}
	}
}

func isException(err error) bool {
	var e *Exception
	return errors.As(err, &e)
}

// get takes the most recently used idle connection, closing those idle too long.
func (p *Pool) get() (c *Conn, reused bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	for len(p.idle) > 0 {
		c = p.idle[len(p.idle)-1]
		p.idle = p.idle[:len(p.idle)-1]
		if time.Since(c.used) < maxIdle {
			return c, true
		}
		c.Close()
	}
	return nil, false
}

// Put gives back a connection: kept if it is usable and the pool has room, else closed.
func (p *Pool) Put(c *Conn) {
	if c.Err() != nil {
		c.Close()
		return
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if len(p.idle) >= p.max {
		c.Close()
		return
	}
	p.idle = append(p.idle, c)
}

// Close closes the idle connections.
func (p *Pool) Close() {
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, c := range p.idle {
		c.Close()
	}
	p.idle = nil
}
