package rollout

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"path/filepath"
	"syscall"
	"time"

	"github.com/fsnotify/fsnotify"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/metric"

	"github.com/arbiter-dev/arbiter/decision"
)

// DefaultReloadDebounce is how long Watcher waits after the last file change before it
// reloads, so that an editor's or a deployment's burst of writes gives one reload.
const DefaultReloadDebounce = 250 * time.Millisecond

// Reload results, the "result" attribute of the reload counter.
const (
	ReloadSwapped   = "swapped"   // a new version is serving
	ReloadUnchanged = "unchanged" // the bundle compiled to the digest already serving
	ReloadFailed    = "failed"    // the bundle did not load or compile: the last good one keeps serving
)

// Watcher reloads a policy bundle from disk into a Holder on SIGHUP and when the
// files under its path change. A bundle that fails to load never replaces a good one: the
// watcher logs the error, counts it, and the last good version keeps serving.
type Watcher struct {
	path     string
	holder   *Holder
	logger   *slog.Logger
	reloads  metric.Int64Counter
	debounce time.Duration
	watcher  *fsnotify.Watcher
	hup      chan os.Signal
}

// WatchOption configures a Watcher.
type WatchOption func(*Watcher)

// WithReloadDebounce sets the quiet time after a file change before reloading (default
// DefaultReloadDebounce).
func WithReloadDebounce(d time.Duration) WatchOption {
	return func(w *Watcher) { w.debounce = d }
}

// NewWatcher starts watching path (a bundle file or folder) and SIGHUP. reloads counts
// reload attempts by result (nil: not counted). Call Run to act on them; the watch and the
// signal handler are released when Run returns.
func NewWatcher(path string, holder *Holder, logger *slog.Logger, reloads metric.Int64Counter, opts ...WatchOption) (*Watcher, error) {
	w := &Watcher{path: path, holder: holder, logger: logger, reloads: reloads, debounce: DefaultReloadDebounce}
	for _, o := range opts {
		o(w)
	}
	fw, err := fsnotify.NewWatcher()
	if err != nil {
		return nil, fmt.Errorf("watch policy %s: %w", path, err)
	}
	st, err := os.Stat(path)
	if err != nil {
		fw.Close()
		return nil, fmt.Errorf("watch policy: %w", err)
	}
	// Watch folders, not files: editors and deployments replace files by renaming, which a
	// watch on the file itself would lose.
	dirs := []string{filepath.Dir(path)}
	if st.IsDir() {
		dirs = []string{path}
		if t := filepath.Join(path, "tests"); isDir(t) {
			dirs = append(dirs, t)
		}
	}
	for _, d := range dirs {
		if err := fw.Add(d); err != nil {
			fw.Close()
			return nil, fmt.Errorf("watch policy %s: %w", d, err)
		}
	}
	w.watcher = fw
	w.hup = make(chan os.Signal, 1)
	signal.Notify(w.hup, syscall.SIGHUP)
	return w, nil
}

func isDir(p string) bool {
	st, err := os.Stat(p)
	return err == nil && st.IsDir()
}

// Watch is NewWatcher followed by Run: it reloads the bundle at path into holder
// until ctx is done.
func Watch(ctx context.Context, path string, holder *Holder, logger *slog.Logger, reloads metric.Int64Counter, opts ...WatchOption) error {
	w, err := NewWatcher(path, holder, logger, reloads, opts...)
	if err != nil {
		return err
	}
	return w.Run(ctx)
}

// Run reloads on every SIGHUP and, debounced, after file changes, until ctx is done. It
// returns nil when ctx ends, or the file watcher's error.
func (w *Watcher) Run(ctx context.Context) error {
	defer signal.Stop(w.hup)
	defer w.watcher.Close()
	timer := time.NewTimer(time.Hour)
	timer.Stop()
	defer timer.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-w.hup:
			timer.Stop()
			w.Reload(ctx, "sighup")
		case ev, ok := <-w.watcher.Events:
			if !ok {
				return nil
			}
			if !w.relevant(ev) {
				continue
			}
			if ev.Has(fsnotify.Create) && filepath.Base(ev.Name) == "tests" && isDir(ev.Name) {
				_ = w.watcher.Add(ev.Name) // a tests folder added later
			}
			timer.Reset(w.debounce)
		case <-timer.C:
			w.Reload(ctx, "file change")
		case err, ok := <-w.watcher.Errors:
			if !ok {
				return nil
			}
			if errors.Is(err, fsnotify.ErrEventOverflow) {
				timer.Reset(w.debounce) // events were lost: reload to be safe
				continue
			}
			return fmt.Errorf("watch policy %s: %w", w.path, err)
		}
	}
}

// relevant reports whether ev can change the bundle: a YAML file (or, for a single-file
// bundle, that file) or the tests folder.
func (w *Watcher) relevant(ev fsnotify.Event) bool {
	if ev.Op == fsnotify.Chmod {
		return false
	}
	if !isDir(w.path) {
		return filepath.Clean(ev.Name) == filepath.Clean(w.path)
	}
	ext := filepath.Ext(ev.Name)
	return ext == ".yaml" || ext == ".yml" || filepath.Base(ev.Name) == "tests"
}

// Reload loads and compiles the bundle now and swaps it in when it compiled and differs from
// the serving one. It returns the result (ReloadSwapped, ReloadUnchanged or ReloadFailed).
func (w *Watcher) Reload(ctx context.Context, trigger string) string {
	result := ReloadFailed
	p, err := decision.LoadPolicy(w.path)
	switch {
	case err != nil:
		attrs := []slog.Attr{slog.String("path", w.path), slog.String("trigger", trigger), slog.String("error", err.Error())}
		if old := w.holder.Load(); old != nil {
			attrs = append(attrs, slog.String("serving_version", old.Ref().Version), slog.String("serving_digest", old.Ref().Digest))
		}
		w.logger.LogAttrs(ctx, slog.LevelError, "policy reload failed: keeping the last good version", attrs...)
	case w.holder.Load() != nil && w.holder.Load().Ref() == p.Ref():
		result = ReloadUnchanged
	default:
		w.holder.Store(p)
		result = ReloadSwapped
		w.logger.LogAttrs(ctx, slog.LevelInfo, "policy reloaded", slog.String("trigger", trigger),
			slog.String("policy_id", p.Ref().ID), slog.String("version", p.Ref().Version), slog.String("digest", p.Ref().Digest))
	}
	if w.reloads != nil {
		w.reloads.Add(ctx, 1, metric.WithAttributes(attribute.String("result", result)))
	}
	return result
}
