package kvs

import (
	"net/url"
	"strings"
)

// RedactURL returns a store URL fit to print or log: the password of the
// userinfo and the value of every query parameter whose name contains
// "password" (password, sslpassword, ...) are replaced with "xxxxx". A URL
// that does not parse is shown as its scheme only, because a parse error
// would quote it whole. A bolt:PATH URL holds no secret and is returned as
// it is. The server, its start-up line and the store's errors all show URLs
// through this one function.
func RedactURL(raw string) string {
	if strings.HasPrefix(raw, "bolt:") {
		return raw
	}
	u, err := url.Parse(raw)
	if err != nil || u.Opaque != "" || u.Scheme == "" {
		scheme, _, ok := strings.Cut(raw, ":")
		if !ok || scheme == "" || strings.ContainsAny(scheme, "/@ ?#%") {
			return "(URL not shown)"
		}
		return scheme + ":(URL not shown)"
	}
	if u.User != nil {
		if _, has := u.User.Password(); has {
			u.User = url.UserPassword(u.User.Username(), "xxxxx")
		}
	}
	u.RawQuery = redactQuery(u.RawQuery)
	u.Fragment, u.RawFragment = "", ""
	return u.String()
}

// redactQuery replaces the value of every parameter whose name contains
// "password", keeping the others byte for byte (even malformed ones).
func redactQuery(q string) string {
	if q == "" {
		return q
	}
	parts := strings.Split(q, "&")
	for i, p := range parts {
		name, _, hasValue := strings.Cut(p, "=")
		if n, err := url.QueryUnescape(name); err == nil {
			name = n
		}
		if strings.Contains(strings.ToLower(name), "password") {
			if !hasValue {
				continue
			}
			parts[i] = p[:strings.IndexByte(p, '=')] + "=xxxxx"
		}
	}
	return strings.Join(parts, "&")
}
