package membudget_test

import (
	"sync"
	"testing"

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
