// Package tail keeps the end of what a child process writes, for the error
// that names why it failed (pgserver's PostgreSQL, promtest's Prometheus).
package tail

import "sync"

// Writer keeps the last Max bytes written to it; it is safe for
// concurrent use.
type Writer struct {
	Max int

	mu  sync.Mutex
	buf []byte
}

// New returns a Writer that keeps the last max bytes.
func New(max int) *Writer { return &Writer{Max: max} }

// Write implements io.Writer; it never fails.
func (w *Writer) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.buf = append(w.buf, p...)
	if len(w.buf) > w.Max {
		w.buf = append(w.buf[:0], w.buf[len(w.buf)-w.Max:]...)
	}
	return len(p), nil
}

// String returns what is kept.
func (w *Writer) String() string {
	w.mu.Lock()
	defer w.mu.Unlock()
	return string(w.buf)
}

// Reset forgets what was written.
func (w *Writer) Reset() {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.buf = w.buf[:0]
}
