package client_test

import (
	"context"
	"fmt"
	"log"
	"net/http"

	"github.com/verdict-pdp/verdict/client"
)

// A service asks its Verdict sidecar (compiled, not run: it needs a server).
func Example() {
	pdp, err := client.New(client.Options{URL: "http://127.0.0.1:8181"})
	if err != nil {
		log.Fatal(err)
	}
	d, err := pdp.Decide(context.Background(), client.Request{
		Token:  "eyJ...", // the end user's bearer token
		Action: client.Action{Name: "orders:read"},
	})
	if err != nil || !d.Allow { // every error is a deny too
		fmt.Println("denied:", d.Reasons)
		return
	}
	fmt.Println("allowed")
}

// Middleware asks about every request before the handler runs (compiled,
// not run).
func ExampleClient_Middleware() {
	pdp, err := client.New(client.Options{URL: "http://127.0.0.1:8181"})
	if err != nil {
		log.Fatal(err)
	}
	orders := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		d, _ := client.DecisionFromContext(r.Context())
		fmt.Fprintln(w, "allowed by decision", d.ID)
	})
	http.Handle("/orders/", pdp.Middleware(client.MiddlewareOptions{})(orders))
}
