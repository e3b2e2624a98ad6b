package postgres

import (
	"context"
	"fmt"
	"time"

	"golang.org/x/sync/semaphore"
)

// largeMessage: a message whose body is longer than this is read only
// once the handler's memory for large messages has room for it (see
// messageMemory); smaller ones are read at once.
const largeMessage = 1 << 20

// DefaultLargeMessageMemory is Options.LargeMessageMemory's default.
const DefaultLargeMessageMemory = 512 << 20

// largeMessageWait bounds how long a session waits for room before the
// message is refused.
const largeMessageWait = 10 * time.Second

// messageMemory bounds the bytes the handler's sessions hold in large
// messages at once (a result value, a Bind's parameters, a long statement),
// so that agents sharing the gateway cannot make it hold more than that
// however many large values they ask for at once: every agent of the host
// goes through the one process. A message waits its turn (first come,
// first served) for up to largeMessageWait, and is refused after that, or
// at once when it is larger than the whole budget.
type messageMemory struct {
	sem   *semaphore.Weighted
	limit int64
}

func newMessageMemory(limit int64) *messageMemory {
	return &messageMemory{sem: semaphore.NewWeighted(limit), limit: limit}
}

// hold waits for n bytes of room, until ctx ends or largeMessageWait
// passes. Its error is a *tooLarge, or ctx's cause.
func (m *messageMemory) hold(ctx context.Context, n int) error {
	if int64(n) > m.limit {
		return &tooLarge{size: n, limit: m.limit, never: true}
	}
	wait, cancel := context.WithTimeout(ctx, largeMessageWait)
	defer cancel()
	if err := m.sem.Acquire(wait, int64(n)); err != nil {
		if ctx.Err() != nil {
			return context.Cause(ctx)
		}
		return &tooLarge{size: n, limit: m.limit}
	}
	return nil
}

func (m *messageMemory) release(n int) { m.sem.Release(int64(n)) }

// tooLarge is a message the handler's memory for large messages had no
// room for (see messageMemory), returned before its body is read.
type tooLarge struct {
	kind  byte // the message's type
	size  int  // of its body
	limit int64
	never bool // larger than the whole budget
}

func (e *tooLarge) Error() string {
	if e.never {
		return fmt.Sprintf("a message of %d bytes is larger than interlock's memory for large messages (%d MiB)", e.size, e.limit>>20)
	}
	return fmt.Sprintf("interlock's memory for large messages (%d MiB, shared by every session) stayed in use for %s: a message of %d bytes was not read; try again",
		e.limit>>20, largeMessageWait, e.size)
}
