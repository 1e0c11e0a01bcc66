// One call's media on GStreamer's webrtcbin, behind a small synchronous C interface: every
// function blocks until its step is done, so the Swift side runs them on a thread of its own.
#ifndef KANDY_MEDIA_H
#define KANDY_MEDIA_H

#include <stdint.h>

typedef struct kl_media kl_media;

typedef struct {
    /// "stun://host:port", or NULL.
    const char *stun_server;
    /// "turn://user:password@host:port" with user and password percent-encoded, or NULL.
    const char *turn_server;
    /// Only relayed candidates (ICE through TURN).
    int relay_only;
    /// A WAV file to send; NULL: a sine tone of tone_hz.
    const char *play_path;
    double tone_hz;
    /// A WAV file to record what is received into; NULL: discarded.
    const char *record_path;
} kl_media_options;

typedef struct {
    uint64_t packets_sent, bytes_sent, packets_received, bytes_received;
    /// Seconds; negative when not known yet.
    double jitter, round_trip_time;
} kl_media_stats;

/// NULL on failure, with *error set (free it with kl_media_free_string).
kl_media *kl_media_new(const kl_media_options *options, char **error);
/// SDP with every ICE candidate gathered; NULL on failure. Free with kl_media_free_string.
char *kl_media_create_offer(kl_media *media, int hold, char **error);
char *kl_media_create_answer(kl_media *media, const char *offer, int hold, char **error);
int kl_media_apply_answer(kl_media *media, const char *answer, char **error);
void kl_media_get_stats(kl_media *media, kl_media_stats *stats);
/// Ends the recording properly (EOS) and releases everything.
void kl_media_free(kl_media *media);
void kl_media_free_string(char *string);

#endif
