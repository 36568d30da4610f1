package token_test

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/verdict-pdp/verdict/authz/token"
)

func Example() {
	secret := []byte("an example secret of at least 32 bytes")
	key := token.HMACKey(secret)
	key.ID = "k1"
	v, err := token.NewVerifier(token.Options{
		Issuers: []token.Issuer{{
			Issuer:     "https://idp.example.com",
			Audiences:  []string{"orders-api"},
			Algorithms: []string{"HS256"},
			Keys:       token.StaticKeys{key},
		}},
		Leeway: 30 * time.Second,
	})
	if err != nil {
		fmt.Println(err)
		return
	}

	mint := func(exp time.Time) string {
		t := jwt.NewWithClaims(jwt.SigningMethodHS256, jwt.MapClaims{
			"iss": "https://idp.example.com", "aud": "orders-api", "sub": "alice", "exp": exp.Unix(),
		})
		t.Header["kid"] = "k1"
		s, _ := t.SignedString(secret)
		return s
	}

	got, err := v.Verify(context.Background(), mint(time.Now().Add(time.Hour)))
	fmt.Println(got.Subject, err)

	_, err = v.Verify(context.Background(), mint(time.Now().Add(-time.Hour)))
	fmt.Println(errors.Is(err, token.ErrInvalid), errors.Is(err, token.ErrExpired), token.Reason(err))
	// Output:
	// alice <nil>
	// true true expired
}

func ExampleRaw() {
	r := token.Raw("eyJhbGciOiJIUzI1NiJ9.e30.c2ln")
	fmt.Println(r)
	fmt.Printf("%q %#v\n", r, r)
	// Output:
	// [redacted jwt sha256:08f5f1cd]
	// "[redacted jwt sha256:08f5f1cd]" [redacted jwt sha256:08f5f1cd]
}

func ExampleReason() {
	fmt.Println(token.Reason(token.ErrInvalid))
	fmt.Println(token.Reason(errors.New("something else")))
	fmt.Println(token.Reason(fmt.Errorf("%w: %w: detail", token.ErrInvalid, token.ErrUnknownKID)))
	// Output:
	// invalid
	// invalid
	// unknown_kid
}

// A caller (service) token names a caller audience; a subject token names
// the issuer's audience. Each is refused where the other is wanted.
func ExampleVerifier_VerifyCaller() {
	secret := []byte("an example secret of at least 32 bytes")
	v, err := token.NewVerifier(token.Options{
		Issuers: []token.Issuer{{
			Issuer:       "https://idp.example.com",
			Audiences:    []string{"orders-api"},
			Algorithms:   []string{"HS256"},
			Keys:         token.StaticKeys{token.HMACKey(secret)},
			MaxLifetime:  time.Hour,
			RequiredType: "at+jwt",
		}},
		CallerAudiences: []string{"verdict"},
	})
	if err != nil {
		fmt.Println(err)
		return
	}
	mint := func(aud string) string {
		now := time.Now()
		t := jwt.NewWithClaims(jwt.SigningMethodHS256, jwt.MapClaims{
			"iss": "https://idp.example.com", "aud": aud, "sub": "billing",
			"iat": now.Unix(), "exp": now.Add(time.Hour).Unix(),
		})
		t.Header["typ"] = "at+jwt"
		s, _ := t.SignedString(secret)
		return s
	}

	caller, err := v.VerifyCaller(context.Background(), mint("verdict"))
	fmt.Println(caller.Subject, err)
	_, err = v.Verify(context.Background(), mint("verdict"))
	fmt.Println(token.Reason(err))
	_, err = v.VerifyCaller(context.Background(), mint("orders-api"))
	fmt.Println(token.Reason(err))
	fmt.Println(v.KeysFresh("https://idp.example.com"))
	// Output:
	// billing <nil>
	// bad_audience
	// bad_audience
	// <nil>
}
