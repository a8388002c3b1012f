package server

import (
	"context"
	"log/slog"
)

// auditObserver writes one line per request to log: who (the policy
// identity that matched, the certificate's CN and serial), what (operation,
// key), the answer (status, sizes, duration) and the peer. Never the
// value.
func auditObserver(log *slog.Logger) Observer {
	return Observer{Request: func(e RequestEvent) {
		ctx := context.Background()
		if !log.Enabled(ctx, slog.LevelInfo) {
			return
		}
		log.LogAttrs(ctx, slog.LevelInfo, "request",
			slog.String("identity", e.Identity),
			slog.String("cn", e.CN),
			slog.String("serial", e.Serial),
			slog.String("op", e.Op),
			slog.String("key", e.Key),
			slog.Int("status", e.Status),
			slog.Int64("bytes_in", e.BytesIn),
			slog.Int("bytes_out", e.BytesOut),
			slog.Duration("duration", e.Duration),
			slog.String("peer", e.Peer),
		)
	}}
}
