// Command grpcload measures Verdict's ext_authz listener (ext_authz.grpc_addr,
// without TLS) from outside the process, for BENCHMARKS.md.
//
//	grpcload check -addr HOST:PORT [-c 2] [-w 16] [-d 10s] [-pid PID] [-tokens FILE]
//	grpcload flood -addr HOST:PORT [-c 4] [-s 32] [-f 1] [-msg 131072] [-d 20s]
//
// check asks Check, as Envoy does, from -w goroutines over -c connections for
// -d, and prints the calls answered a second; with -pid, also the CPU time
// the server process spent a call (user and system, from /proc). Without
// -tokens it asks one anonymous GET /catalog over and over; with -tokens
// (test/load/gen's tokens.txt, the first field of each line a viewer's
// token) it asks the "rest" workload of test/load/run.sh as Envoy carries
// it: the tokens cycled as Authorization: Bearer, over eight questions on
// /orders/<a new id every call>, GET six times (allow), POST and DELETE once
// each (deny). It first asks each question once and fails unless each gets
// its designed answer, and after the run fails unless the share allowed is
// within 2 % of 6/8: a server cannot look fast by answering wrong.
//
// flood opens -c connections of -s streams each; every stream declares a
// Check message of -msg bytes and sends all but its last byte, -f bytes a
// DATA frame (within HTTP/2 flow control), then holds it back until the
// server ends the call; a connection whose streams have all ended is opened
// again, until -d has passed. It prints the payload bytes sent and how many
// calls the server ended. Watch the server's memory beside it (VmHWM in
// /proc/PID/status).
package main

import (
	"bytes"
	"context"
	"encoding/binary"
	"flag"
	"fmt"
	"math"
	"net"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	"golang.org/x/net/http2"
	"golang.org/x/net/http2/hpack"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
)

func main() {
	if len(os.Args) < 2 || (os.Args[1] != "check" && os.Args[1] != "flood") {
		fmt.Fprintln(os.Stderr, "usage: grpcload check|flood [flags]")
		os.Exit(2)
	}
	fs := flag.NewFlagSet(os.Args[1], flag.ExitOnError)
	addr := fs.String("addr", "127.0.0.1:9191", "the ext_authz listener")
	conns := fs.Int("c", 2, "connections")
	dur := fs.Duration("d", 10*time.Second, "how long")
	workers := fs.Int("w", 16, "check: goroutines asking")
	pid := fs.Int("pid", 0, "check: the server's process, to read its CPU time")
	streams := fs.Int("s", 32, "flood: streams a connection")
	frame := fs.Int("f", 1, "flood: payload bytes a DATA frame")
	msg := fs.Int("msg", 128<<10, "flood: the message length declared")
	tokens := fs.String("tokens", "", "check: a file of tokens, one a line (first field), to ask the rest workload")
	_ = fs.Parse(os.Args[2:])
	var err error
	if os.Args[1] == "check" {
		var q questions
		if q, err = newQuestions(*tokens); err == nil {
			err = check(*addr, *conns, *workers, *dur, *pid, q)
		}
	} else {
		flood(*addr, *conns, *streams, *frame, *msg, *dur)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "grpcload:", err)
		os.Exit(1)
	}
}

// check asks q's questions over and over.
func check(addr string, conns, workers int, dur time.Duration, pid int, q questions) error {
	var clients []authv3.AuthorizationClient
	for range conns {
		c, err := grpc.NewClient("passthrough:///"+addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
		if err != nil {
			return err
		}
		defer c.Close()
		clients = append(clients, authv3.NewAuthorizationClient(c))
	}
	for _, c := range clients { // connect, and every question answered as designed
		for i := range q.cases() {
			req, want := q.ask(uint64(i))
			resp, err := c.Check(context.Background(), req)
			if err != nil {
				return err
			}
			if allowed := resp.GetStatus().GetCode() == 0; allowed != want {
				return fmt.Errorf("question %d (%s %s): allowed %v, designed %v", i, req.Attributes.Request.Http.Method, req.Attributes.Request.Http.Path, allowed, want)
			}
		}
	}
	cpu0 := cpuSeconds(pid)
	var answered, allowed, failed, next atomic.Int64
	var wg sync.WaitGroup
	end := time.Now().Add(dur)
	for i := range workers {
		wg.Go(func() {
			c := clients[i%len(clients)]
			for time.Now().Before(end) {
				req, _ := q.ask(uint64(next.Add(1)))
				ctx, cancel := context.WithTimeout(context.Background(), time.Second) // sent as grpc-timeout, as Envoy does
				resp, err := c.Check(ctx, req)
				cancel()
				switch {
				case err != nil:
					failed.Add(1)
				case resp.GetStatus().GetCode() == 0:
					allowed.Add(1)
					answered.Add(1)
				default:
					answered.Add(1)
				}
			}
		})
	}
	wg.Wait()
	n := answered.Load()
	share := float64(allowed.Load()) / float64(max(n, 1))
	fmt.Printf("calls/s %.0f failed %d allowed %.3f", float64(n)/dur.Seconds(), failed.Load(), share)
	if pid != 0 && n > 0 {
		fmt.Printf(" server-cpu-us/call %.1f", (cpuSeconds(pid)-cpu0)*1e6/float64(n))
	}
	fmt.Println()
	if want := q.allowShare(); math.Abs(share-want) > 0.02 {
		return fmt.Errorf("allowed %.3f of the calls, designed %.3f", share, want)
	}
	return nil
}

// questions are what check asks: with no tokens, an anonymous GET
// /catalog (allowed); with tokens, the rest workload.
type questions struct {
	tokens []string
}

// restMethods are the rest workload's eight questions, and whether each
// is allowed (test/load/gen's "rest").
var restMethods = []struct {
	method string
	allow  bool
}{{"GET", true}, {"GET", true}, {"POST", false}, {"GET", true}, {"GET", true}, {"DELETE", false}, {"GET", true}, {"GET", true}}

func newQuestions(file string) (questions, error) {
	if file == "" {
		return questions{}, nil
	}
	b, err := os.ReadFile(file)
	if err != nil {
		return questions{}, err
	}
	var q questions
	for line := range strings.Lines(string(b)) {
		if f := strings.Fields(line); len(f) > 0 {
			q.tokens = append(q.tokens, f[0])
		}
	}
	if len(q.tokens) == 0 {
		return questions{}, fmt.Errorf("%s: no tokens", file)
	}
	return q, nil
}

func (q questions) cases() int {
	if q.tokens == nil {
		return 1
	}
	return len(restMethods)
}

func (q questions) allowShare() float64 {
	if q.tokens == nil {
		return 1
	}
	n := 0
	for _, m := range restMethods {
		if m.allow {
			n++
		}
	}
	return float64(n) / float64(len(restMethods))
}

// ask is question n and whether it is to be allowed.
func (q questions) ask(n uint64) (*authv3.CheckRequest, bool) {
	method, path, allow := "GET", "/catalog", true
	headers := map[string]string{"user-agent": "curl/8.5.0", "accept": "*/*", "x-request-id": "c0a8e5f2-5b4c-4f1e-9d3a-2b7e8f6a1d0c"}
	if q.tokens != nil {
		m := restMethods[n%uint64(len(restMethods))]
		method, path, allow = m.method, "/orders/"+strconv.FormatUint(n, 10), m.allow
		headers["authorization"] = "Bearer " + q.tokens[n%uint64(len(q.tokens))]
	}
	headers[":authority"], headers[":method"], headers[":path"] = "shop.example", method, path
	return &authv3.CheckRequest{Attributes: &authv3.AttributeContext{Request: &authv3.AttributeContext_Request{Http: &authv3.AttributeContext_HttpRequest{
		Id: "load-" + strconv.FormatUint(n, 10), Method: method, Path: path, Host: "shop.example", Scheme: "https", Protocol: "HTTP/1.1",
		Headers: headers,
	}}}}, allow
}

// cpuSeconds is the user and system CPU time of process pid, 0 when it
// cannot be read.
func cpuSeconds(pid int) float64 {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil || pid == 0 {
		return 0
	}
	f := strings.Fields(string(b[bytes.LastIndexByte(b, ')')+2:]))
	if len(f) < 13 {
		return 0
	}
	utime, _ := strconv.ParseFloat(f[11], 64)
	stime, _ := strconv.ParseFloat(f[12], 64)
	return (utime + stime) / 100 // USER_HZ
}

// floodConn is one flooding connection: its framer and the flow-control
// windows the server has granted.
type floodConn struct {
	mu      sync.Mutex
	cond    *sync.Cond
	fr      *http2.Framer
	connWin int64
	initWin int64
	win     map[uint32]int64
	ended   map[uint32]bool
	closed  bool
	counts  *floodCounts
}

// floodCounts are what a flood has done.
type floodCounts struct {
	sent  atomic.Int64 // payload bytes
	ended atomic.Int64 // calls the server ended
}

func flood(addr string, conns, streams, frame, msg int, dur time.Duration) {
	deadline := time.Now().Add(dur)
	var counts floodCounts
	var wg sync.WaitGroup
	for range conns {
		wg.Go(func() {
			for time.Now().Before(deadline) {
				floodOnce(&counts, addr, streams, frame, msg, deadline)
			}
		})
	}
	wg.Wait()
	fmt.Printf("sent %d MiB of payload; calls ended by the server %d\n", counts.sent.Load()>>20, counts.ended.Load())
}

// floodOnce opens a connection and its streams, and returns when they have
// all ended (or the deadline has passed).
func floodOnce(counts *floodCounts, addr string, streams, frame, msg int, deadline time.Time) {
	nc, err := net.Dial("tcp", addr)
	if err != nil {
		time.Sleep(100 * time.Millisecond)
		return
	}
	defer nc.Close()
	c := &floodConn{fr: http2.NewFramer(nc, nc), connWin: 65535, initWin: 65535, win: map[uint32]int64{}, ended: map[uint32]bool{}, counts: counts}
	c.cond = sync.NewCond(&c.mu)
	if _, err := nc.Write([]byte(http2.ClientPreface)); err != nil || c.fr.WriteSettings() != nil {
		return
	}
	go c.read()
	stop := time.AfterFunc(time.Until(deadline), func() { c.mu.Lock(); c.closed = true; c.cond.Broadcast(); c.mu.Unlock() })
	defer stop.Stop()
	var wg sync.WaitGroup
	for i := range streams {
		id := uint32(2*i + 1)
		c.open(id, msg) // in order: stream IDs must grow
		wg.Go(func() { c.send(id, frame, msg-1) })
	}
	wg.Wait()
}

// read follows the server's frames: settings, window updates, pings, and
// the ends of streams.
func (c *floodConn) read() {
	for {
		f, err := c.fr.ReadFrame()
		c.mu.Lock()
		if err != nil {
			c.closed = true
			c.cond.Broadcast()
			c.mu.Unlock()
			return
		}
		switch f := f.(type) {
		case *http2.SettingsFrame:
			if !f.IsAck() {
				if v, ok := f.Value(http2.SettingInitialWindowSize); ok {
					for id := range c.win {
						c.win[id] += int64(v) - c.initWin
					}
					c.initWin = int64(v)
				}
				_ = c.fr.WriteSettingsAck()
			}
		case *http2.WindowUpdateFrame:
			if f.StreamID == 0 {
				c.connWin += int64(f.Increment)
			} else {
				c.win[f.StreamID] += int64(f.Increment)
			}
		case *http2.PingFrame:
			if !f.IsAck() {
				_ = c.fr.WritePing(true, f.Data)
			}
		case *http2.RSTStreamFrame:
			c.end(f.StreamID)
		case *http2.HeadersFrame:
			if f.StreamEnded() {
				c.end(f.StreamID)
			}
		case *http2.DataFrame:
			if f.StreamEnded() {
				c.end(f.StreamID)
			}
		case *http2.GoAwayFrame:
			c.closed = true
		}
		c.cond.Broadcast()
		c.mu.Unlock()
	}
}

func (c *floodConn) end(id uint32) {
	if !c.ended[id] {
		c.ended[id] = true
		c.counts.ended.Add(1)
	}
}

// open sends a Check call's headers and its message's prefix.
func (c *floodConn) open(id uint32, msg int) {
	var hb bytes.Buffer
	enc := hpack.NewEncoder(&hb)
	for _, kv := range [][2]string{{":method", "POST"}, {":scheme", "http"}, {":path", authv3.Authorization_Check_FullMethodName},
		{":authority", "verdict"}, {"content-type", "application/grpc"}, {"te", "trailers"}} {
		_ = enc.WriteField(hpack.HeaderField{Name: kv[0], Value: kv[1]})
	}
	var prefix [5]byte
	binary.BigEndian.PutUint32(prefix[1:], uint32(msg))
	c.mu.Lock()
	defer c.mu.Unlock()
	c.win[id] = c.initWin - int64(len(prefix))
	c.connWin -= int64(len(prefix))
	_ = c.fr.WriteHeaders(http2.HeadersFrameParam{StreamID: id, BlockFragment: hb.Bytes(), EndHeaders: true})
	_ = c.fr.WriteData(id, false, prefix[:])
}

// send sends n bytes of the message, frame bytes a DATA frame, then waits
// for the stream to end.
func (c *floodConn) send(id uint32, frame, n int) {
	payload := make([]byte, frame)
	c.mu.Lock()
	defer c.mu.Unlock()
	for n > 0 {
		k := int64(min(frame, n))
		for !c.closed && !c.ended[id] && (c.win[id] < k || c.connWin < k) {
			c.cond.Wait()
		}
		if c.closed || c.ended[id] {
			return
		}
		if c.fr.WriteData(id, false, payload[:k]) != nil {
			c.closed = true
			return
		}
		c.win[id] -= k
		c.connWin -= k
		c.counts.sent.Add(k)
		n -= int(k)
	}
	for !c.closed && !c.ended[id] {
		c.cond.Wait()
	}
}
