package membudget_test

import (
	"context"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/verdict-pdp/verdict/internal/membudget"
)

// TestBudget: takes that fit succeed, one that does not reserves nothing,
// and concurrent takes never hold more than the budget.
func TestBudget(t *testing.T) {
	b := membudget.New(10)
	if !b.Take(6) || b.Take(5) || b.Used() != 6 || !b.Take(4) || b.Take(1) {
		t.Fatalf("used %d after takes of 6, 5 (refused), 4 and 1 (refused), want 10", b.Used())
	}
	b.Give(10)
	var wg sync.WaitGroup
	var mu sync.Mutex
	held := 0
	for range 64 {
		wg.Go(func() {
			if b.Take(3) {
				mu.Lock()
				held++
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	if held != 3 || b.Used() != 9 {
		t.Errorf("%d concurrent takes of 3 held, %d used, in a budget of 10; want 3 and 9", held, b.Used())
	}
}

// TestTakeWithin: a take that does not fit waits for bytes given back,
// gives up at its time or when its context ends (reserving nothing), and
// many waiting takers never hold more than the budget between them, and
// all get their turn as bytes come back.
func TestTakeWithin(t *testing.T) {
	b := membudget.New(10)
	if !b.Take(8) {
		t.Fatal("8 of 10")
	}
	if b.TakeWithin(t.Context(), 5, time.Now().Add(20*time.Millisecond)) || b.Used() != 8 {
		t.Fatalf("a take past its time: used %d, want it refused and 8 used", b.Used())
	}
	ctx, cancel := context.WithCancel(t.Context())
	time.AfterFunc(20*time.Millisecond, cancel)
	if b.TakeWithin(ctx, 5, time.Now().Add(time.Minute)) || b.Used() != 8 {
		t.Fatalf("a take whose context ended: used %d, want it refused and 8 used", b.Used())
	}
	time.AfterFunc(20*time.Millisecond, func() { b.Give(8) })
	start := time.Now()
	if !b.TakeWithin(t.Context(), 5, time.Now().Add(time.Minute)) || b.Used() != 5 {
		t.Fatalf("a take that bytes given back let in: used %d, want 5", b.Used())
	}
	if waited := time.Since(start); waited > 30*time.Second {
		t.Errorf("waited %v: the bytes given back did not wake the take", waited)
	}
	b.Give(5)

	// 32 takers of 3 in a budget of 10, each holding a moment: at most
	// three at once, and every one served.
	var held, most, served atomic.Int64
	var wg sync.WaitGroup
	for range 32 {
		wg.Go(func() {
			if !b.TakeWithin(t.Context(), 3, time.Now().Add(time.Minute)) {
				return
			}
			n := held.Add(1)
			for m := most.Load(); n > m && !most.CompareAndSwap(m, n); m = most.Load() {
			}
			time.Sleep(time.Millisecond)
			held.Add(-1)
			b.Give(3)
			served.Add(1)
		})
	}
	start = time.Now()
	wg.Wait()
	if waited := time.Since(start); waited > 30*time.Second {
		t.Errorf("32 takers took %v: bytes given back did not wake them", waited)
	}
	if most.Load() > 3 || served.Load() != 32 || b.Used() != 0 {
		t.Errorf("%d held at once (want at most 3), %d of 32 served, %d left used", most.Load(), served.Load(), b.Used())
	}
}

// BenchmarkTakeWithinContended: 1,000 callers wait for a budget that
// fits 8 of them, each holding its bytes for 20 µs of work (a body being
// read and decided): an op is one take served; cpu-ns/op is the process's
// CPU time (user and system) an op. Waking every waiter on each give
// spent the CPU the holders needed.
func BenchmarkTakeWithinContended(b *testing.B) {
	const waiters, fits = 1000, 8
	budget := membudget.New(fits * 8192)
	var served atomic.Int64
	var wg sync.WaitGroup
	ctx, cancel := context.WithCancel(b.Context())
	cpu0 := cpuTime(b)
	defer func() { b.ReportMetric(float64(cpuTime(b)-cpu0)/float64(b.N), "cpu-ns/op") }()
	b.ResetTimer()
	for range waiters {
		wg.Go(func() {
			for ctx.Err() == nil {
				if !budget.TakeWithin(ctx, 8192, time.Now().Add(time.Minute)) {
					continue
				}
				if served.Add(1) >= int64(b.N) {
					cancel()
				}
				work(20 * time.Microsecond)
				budget.Give(8192)
			}
		})
	}
	wg.Wait()
	cancel()
}

// cpuTime is the process's CPU time so far (user and system).
func cpuTime(b *testing.B) time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		b.Fatal(err)
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// work keeps the CPU busy for about d.
func work(d time.Duration) {
	for end := time.Now().Add(d); time.Now().Before(end); {
	}
}

// BenchmarkWaitersGiveUp: 16,000 callers wait for a full budget and give
// up at once (a flood's streams at the end of their patience); an op is
// all of them gone. Taking each out of the queue must not cost its length.
func BenchmarkWaitersGiveUp(b *testing.B) {
	const waiters = 16000
	for b.Loop() {
		b.StopTimer()
		budget := membudget.New(8192)
		budget.Take(8192)
		ctx, cancel := context.WithCancel(b.Context())
		var queued, wg sync.WaitGroup
		queued.Add(waiters)
		for range waiters {
			wg.Go(func() {
				queued.Done()
				budget.TakeWithin(ctx, 8192, time.Now().Add(time.Hour))
			})
		}
		queued.Wait()
		time.Sleep(50 * time.Millisecond) // in the queue
		b.StartTimer()
		cancel()
		wg.Wait()
	}
}
