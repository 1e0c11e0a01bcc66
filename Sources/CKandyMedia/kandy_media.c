#include "kandy_media.h"

#include <gst/gst.h>
#include <gst/sdp/sdp.h>
#include <gst/webrtc/webrtc.h>
#include <string.h>

struct kl_media {
    GstElement *pipeline;
    GstElement *webrtc;
    /// Drops what would be sent while either side holds.
    GstElement *hold;
    /// This side's DTLS role once negotiated ("active" or "passive"): a later answer must keep it
    /// (RFC 5763 §5), which webrtcbin 1.22's renegotiated answers do not.
    char *role;
    /// The head of the recording branch, once the first audio stream arrived.
    GstElement *record_head;
    char *record_path;
    GMutex lock;
    /// Local candidates as gathered: "index\ncandidate" (webrtcbin leaves them out of
    /// renegotiated descriptions).
    GPtrArray *candidates;
};

/// libnice warns when an agent is freed while TURN refreshes are scheduled, which is every call
/// through TURN that ends: that one is noise; the rest go where they always go.
static void log_libnice(const gchar *domain, GLogLevelFlags level, const gchar *message, gpointer data) {
    (void)data;
    if (strstr(message, "alive TURN refreshes")) return;
    g_log_default_handler(domain, level, message, NULL);
}

static gpointer initialize(gpointer unused) {
    (void)unused;
    gst_init(NULL, NULL);
    g_log_set_handler("libnice", G_LOG_LEVEL_WARNING, log_libnice, NULL);
    return NULL;
}

static void fail(char **error, const char *message, const GError *cause) {
    if (error) *error = g_strdup_printf("%s%s%s", message, cause ? ": " : "", cause ? cause->message : "");
}

static void on_candidate(GstElement *webrtc, guint index, gchar *candidate, gpointer data) {
    (void)webrtc;
    kl_media *media = data;
    g_mutex_lock(&media->lock);
    g_ptr_array_add(media->candidates, g_strdup_printf("%u\n%s", index, candidate));
    g_mutex_unlock(&media->lock);
}

/// A decoded stream: the first audio one is recorded (or dropped), anything else dropped.
static void on_decoded(GstElement *decode, GstPad *pad, gpointer data) {
    (void)decode;
    kl_media *media = data;
    GstCaps *caps = gst_pad_get_current_caps(pad);
    if (!caps) caps = gst_pad_query_caps(pad, NULL);
    const gchar *name = gst_structure_get_name(gst_caps_get_structure(caps, 0));
    gboolean audio = g_str_has_prefix(name, "audio/");
    gst_caps_unref(caps);

    g_mutex_lock(&media->lock);
    gboolean record = audio && media->record_path && !media->record_head;
    GstElement *head;
    if (record) {
        head = gst_element_factory_make("audioconvert", NULL);
        GstElement *resample = gst_element_factory_make("audioresample", NULL);
        GstElement *filter = gst_element_factory_make("capsfilter", NULL);
        GstCaps *raw = gst_caps_from_string("audio/x-raw,format=S16LE,channels=1,rate=48000");
        g_object_set(filter, "caps", raw, NULL);
        gst_caps_unref(raw);
        GstElement *wav = gst_element_factory_make("wavenc", NULL);
        GstElement *file = gst_element_factory_make("filesink", NULL);
        g_object_set(file, "location", media->record_path, NULL);
        gst_bin_add_many(GST_BIN(media->pipeline), head, resample, filter, wav, file, NULL);
        gst_element_link_many(head, resample, filter, wav, file, NULL);
        media->record_head = gst_object_ref(head);
        gst_element_sync_state_with_parent(file);
        gst_element_sync_state_with_parent(wav);
        gst_element_sync_state_with_parent(filter);
        gst_element_sync_state_with_parent(resample);
    } else {
        head = gst_element_factory_make("fakesink", NULL);
        g_object_set(head, "sync", FALSE, "async", FALSE, NULL);
        gst_bin_add(GST_BIN(media->pipeline), head);
    }
    gst_element_sync_state_with_parent(head);
    g_mutex_unlock(&media->lock);
    GstPad *sink = gst_element_get_static_pad(head, "sink");
    gst_pad_link(pad, sink);
    gst_object_unref(sink);
}

/// A stream from the other side: audio is decoded, anything else dropped undecoded.
static void on_incoming(GstElement *webrtc, GstPad *pad, gpointer data) {
    (void)webrtc;
    kl_media *media = data;
    if (GST_PAD_DIRECTION(pad) != GST_PAD_SRC) return;
    GstCaps *caps = gst_pad_get_current_caps(pad);
    if (!caps) caps = gst_pad_query_caps(pad, NULL);
    const gchar *kind = gst_structure_get_string(gst_caps_get_structure(caps, 0), "media");
    gboolean audio = kind && strcmp(kind, "audio") == 0;
    gst_caps_unref(caps);
    GstElement *next;
    if (audio) {
        next = gst_element_factory_make("decodebin", NULL);
        g_signal_connect(next, "pad-added", G_CALLBACK(on_decoded), media);
    } else {
        next = gst_element_factory_make("fakesink", NULL);
        g_object_set(next, "sync", FALSE, "async", FALSE, NULL);
    }
    gst_bin_add(GST_BIN(media->pipeline), next);
    gst_element_sync_state_with_parent(next);
    GstPad *sink = gst_element_get_static_pad(next, "sink");
    gst_pad_link(pad, sink);
    gst_object_unref(sink);
}

kl_media *kl_media_new(const kl_media_options *options, char **error) {
    static GOnce once = G_ONCE_INIT;
    g_once(&once, initialize, NULL);

    GString *description = g_string_new("webrtcbin name=webrtc bundle-policy=max-bundle ");
    if (options->play_path) {
        g_string_append(description, "filesrc name=play ! wavparse ! ");
    } else {
        g_string_append_printf(
            description, "audiotestsrc is-live=true wave=sine volume=0.3 freq=%.1f ! ",
            options->tone_hz > 0 ? options->tone_hz : 440.0);
    }
    g_string_append(
        description,
        "audioconvert ! audioresample ! valve name=hold ! queue ! opusenc ! rtpopuspay pt=111 ! "
        "application/x-rtp,media=audio,encoding-name=OPUS,payload=111,clock-rate=48000,encoding-params=(string)2 ! "
        "webrtc.");
    GError *cause = NULL;
    GstElement *pipeline = gst_parse_launch(description->str, &cause);
    g_string_free(description, TRUE);
    if (!pipeline) {
        fail(error, "The media pipeline could not be made (are GStreamer's plugins installed?)", cause);
        g_clear_error(&cause);
        return NULL;
    }
    kl_media *media = g_new0(kl_media, 1);
    media->pipeline = pipeline;
    media->webrtc = gst_bin_get_by_name(GST_BIN(pipeline), "webrtc");
    media->hold = gst_bin_get_by_name(GST_BIN(pipeline), "hold");
    media->record_path = options->record_path ? g_strdup(options->record_path) : NULL;
    media->candidates = g_ptr_array_new_with_free_func(g_free);
    g_mutex_init(&media->lock);
    if (options->play_path) {
        GstElement *play = gst_bin_get_by_name(GST_BIN(pipeline), "play");
        g_object_set(play, "location", options->play_path, NULL);
        gst_object_unref(play);
    }
    if (options->stun_server) g_object_set(media->webrtc, "stun-server", options->stun_server, NULL);
    if (options->turn_server) g_object_set(media->webrtc, "turn-server", options->turn_server, NULL);
    if (options->relay_only) g_object_set(media->webrtc, "ice-transport-policy", 1 /* relay */, NULL);
    g_signal_connect(media->webrtc, "on-ice-candidate", G_CALLBACK(on_candidate), media);
    g_signal_connect(media->webrtc, "pad-added", G_CALLBACK(on_incoming), media);
    if (gst_element_set_state(pipeline, GST_STATE_PLAYING) == GST_STATE_CHANGE_FAILURE) {
        fail(error, "The media pipeline did not start", NULL);
        kl_media_free(media);
        return NULL;
    }
    return media;
}

/// Waits for a promise's reply; NULL (with *error) when it failed.
static GstStructure *settle(GstPromise *promise, const char *what, char **error) {
    GstPromiseResult result = gst_promise_wait(promise);
    const GstStructure *reply = result == GST_PROMISE_RESULT_REPLIED ? gst_promise_get_reply(promise) : NULL;
    GError *cause = NULL;
    if (reply && gst_structure_has_field(reply, "error")) gst_structure_get(reply, "error", G_TYPE_ERROR, &cause, NULL);
    GstStructure *copy = reply && !cause ? gst_structure_copy(reply) : NULL;
    if (!copy) fail(error, what, cause);
    g_clear_error(&cause);
    gst_promise_unref(promise);
    return copy;
}

static int set_description(kl_media *media, const char *signal, GstWebRTCSDPType type, const char *text, char **error) {
    GstSDPMessage *sdp = NULL;
    gst_sdp_message_new_from_text(text, &sdp);
    if (!sdp) {
        fail(error, "The SDP could not be parsed", NULL);
        return 0;
    }
    GstWebRTCSessionDescription *description = gst_webrtc_session_description_new(type, sdp);
    GstPromise *promise = gst_promise_new();
    g_signal_emit_by_name(media->webrtc, signal, description, promise);
    gst_webrtc_session_description_free(description);
    GstPromiseResult result = gst_promise_wait(promise);
    const GstStructure *reply = gst_promise_get_reply(promise);
    GError *cause = NULL;
    if (reply && gst_structure_has_field(reply, "error")) gst_structure_get(reply, "error", G_TYPE_ERROR, &cause, NULL);
    int ok = result == GST_PROMISE_RESULT_REPLIED && !cause;
    if (!ok) fail(error, "The SDP was refused", cause);
    g_clear_error(&cause);
    gst_promise_unref(promise);
    return ok;
}

/// webrtcbin 1.22 refuses a renegotiation that changes a section's direction ("transceiver
/// direction changes are not implemented"). So it is always told sendrecv, the SDP on the wire
/// carries the real direction, and the valve stops what is sent while either side holds.
static const char *directions[] = {"a=sendrecv", "a=sendonly", "a=recvonly", "a=inactive"};

/// `sdp` with every section's direction replaced by what `choose` returns for it (its index in
/// `directions`); a section without one counts as sendrecv.
static char *with_directions(const char *sdp, int (*choose)(int offered, void *context), void *context) {
    gchar **lines = g_strsplit(sdp, "\r\n", -1);
    GString *out = g_string_new(NULL);
    for (gchar **line = lines; *line && (*line)[0]; line++) {
        int found = -1;
        for (int i = 0; i < 4; i++) if (strcmp(*line, directions[i]) == 0) found = i;
        g_string_append_printf(out, "%s\r\n", found >= 0 ? directions[choose(found, context)] : *line);
    }
    g_strfreev(lines);
    return g_string_free(out, FALSE);
}

static int always_sendrecv(int offered, void *context) {
    (void)offered;
    (void)context;
    return 0;
}

static int held_offer(int offered, void *context) {
    (void)offered;
    return *(int *)context ? 3 : 0;
}

/// The answer's direction to an offered one (RFC 3264 §6.1), inactive where this side holds.
static int answered(int offered, void *context) {
    int hold = *(int *)context;
    switch (offered) {
    case 1: return hold ? 3 : 2;  // sendonly → recvonly
    case 2: return hold ? 3 : 1;  // recvonly → sendonly
    case 3: return 3;
    default: return hold ? 3 : 0;
    }
}

/// `sdp` (freed) with every a=setup line saying `role`.
static char *with_role(char *sdp, const char *role) {
    gchar **lines = g_strsplit(sdp, "\r\n", -1);
    g_free(sdp);
    GString *out = g_string_new(NULL);
    for (gchar **line = lines; *line && (*line)[0]; line++) {
        if (g_str_has_prefix(*line, "a=setup:")) {
            g_string_append_printf(out, "a=setup:%s\r\n", role);
        } else {
            g_string_append_printf(out, "%s\r\n", *line);
        }
    }
    g_strfreev(lines);
    return g_string_free(out, FALSE);
}

static int holds(const char *sdp) {
    return strstr(sdp, "a=sendrecv") == NULL && strstr(sdp, "a=recvonly") == NULL &&
           (strstr(sdp, "a=inactive") != NULL || strstr(sdp, "a=sendonly") != NULL);
}

/// The local description once ICE gathering completed (10 s at most), with every gathered
/// candidate in its section.
static char *local_sdp(kl_media *media, char **error) {
    gint64 deadline = g_get_monotonic_time() + 10 * G_TIME_SPAN_SECOND;
    GstWebRTCICEGatheringState state = GST_WEBRTC_ICE_GATHERING_STATE_NEW;
    while (g_get_monotonic_time() < deadline) {
        g_object_get(media->webrtc, "ice-gathering-state", &state, NULL);
        if (state == GST_WEBRTC_ICE_GATHERING_STATE_COMPLETE) break;
        g_usleep(20 * 1000);
    }
    GstWebRTCSessionDescription *description = NULL;
    g_object_get(media->webrtc, "local-description", &description, NULL);
    if (!description) {
        fail(error, "There is no local description", NULL);
        return NULL;
    }
    gchar *text = gst_sdp_message_as_text(description->sdp);
    gst_webrtc_session_description_free(description);

    // Each section gets the candidates of its index that it lacks.
    gchar **lines = g_strsplit(text, "\r\n", -1);
    g_free(text);
    GString *out = g_string_new(NULL);
    int section = -1;
    g_mutex_lock(&media->lock);
    for (gchar **line = lines;; line++) {
        gboolean end = *line == NULL || (*line)[0] == '\0';
        if (end || g_str_has_prefix(*line, "m=")) {
            if (section >= 0) {
                for (guint i = 0; i < media->candidates->len; i++) {
                    const char *entry = g_ptr_array_index(media->candidates, i);
                    const char *candidate = strchr(entry, '\n') + 1;
                    if ((int)g_ascii_strtoull(entry, NULL, 10) != section) continue;
                    gchar *attribute = g_strdup_printf("a=%s\r\n", candidate);
                    if (!strstr(out->str, attribute)) g_string_append(out, attribute);
                    g_free(attribute);
                }
            }
            section++;
        }
        if (end) break;
        g_string_append_printf(out, "%s\r\n", *line);
    }
    g_mutex_unlock(&media->lock);
    g_strfreev(lines);
    return g_string_free(out, FALSE);
}

static char *create(kl_media *media, const char *signal, const char *field, GstWebRTCSDPType type, char **error) {
    GstPromise *promise = gst_promise_new();
    g_signal_emit_by_name(media->webrtc, signal, NULL, promise);
    GstStructure *reply = settle(promise, "The SDP could not be made", error);
    if (!reply) return NULL;
    GstWebRTCSessionDescription *description = NULL;
    gst_structure_get(reply, field, GST_TYPE_WEBRTC_SESSION_DESCRIPTION, &description, NULL);
    gst_structure_free(reply);
    if (!description) {
        fail(error, "The SDP could not be made", NULL);
        return NULL;
    }
    gchar *text = gst_sdp_message_as_text(description->sdp);
    gst_webrtc_session_description_free(description);
    int ok = set_description(media, "set-local-description", type, text, error);
    g_free(text);
    return ok ? local_sdp(media, error) : NULL;
}

char *kl_media_create_offer(kl_media *media, int hold, char **error) {
    g_object_set(media->hold, "drop", hold ? TRUE : FALSE, NULL);
    char *offer = create(media, "create-offer", "offer", GST_WEBRTC_SDP_TYPE_OFFER, error);
    if (!offer) return NULL;
    char *wire = with_directions(offer, held_offer, &hold);
    g_free(offer);
    return wire;
}

char *kl_media_create_answer(kl_media *media, const char *offer, int hold, char **error) {
    char *internal = with_directions(offer, always_sendrecv, NULL);
    int ok = set_description(media, "set-remote-description", GST_WEBRTC_SDP_TYPE_OFFER, internal, error);
    g_free(internal);
    if (!ok) return NULL;
    g_object_set(media->hold, "drop", hold || holds(offer) ? TRUE : FALSE, NULL);
    char *answer = create(media, "create-answer", "answer", GST_WEBRTC_SDP_TYPE_ANSWER, error);
    if (!answer) return NULL;
    // Each section answers the offer's direction for it.
    gchar **offered = g_strsplit(offer, "\r\n", -1);
    GString *choices = g_string_new(NULL);
    int section = -1, seen = 0;
    for (gchar **line = offered;; line++) {
        gboolean end = *line == NULL || (*line)[0] == '\0';
        if (end || g_str_has_prefix(*line, "m=")) {
            if (section >= 0 && !seen) g_string_append_c(choices, (char)answered(0, &hold));
            if (end) break;
            section++;
            seen = 0;
        } else if (section >= 0) {
            for (int i = 0; i < 4; i++) {
                if (!seen && strcmp(*line, directions[i]) == 0) {
                    g_string_append_c(choices, (char)answered(i, &hold));
                    seen = 1;
                }
            }
        }
    }
    g_strfreev(offered);
    // Rewrite the answer's sections in order with those choices.
    gchar **lines = g_strsplit(answer, "\r\n", -1);
    g_free(answer);
    GString *out = g_string_new(NULL);
    section = -1;
    for (gchar **line = lines; *line && (*line)[0]; line++) {
        if (g_str_has_prefix(*line, "m=")) section++;
        int found = -1;
        for (int i = 0; i < 4; i++) if (strcmp(*line, directions[i]) == 0) found = i;
        if (found >= 0 && section >= 0 && (gsize)section < choices->len) {
            g_string_append_printf(out, "%s\r\n", directions[(int)choices->str[section]]);
        } else {
            g_string_append_printf(out, "%s\r\n", *line);
        }
    }
    g_strfreev(lines);
    g_string_free(choices, TRUE);
    char *wire = g_string_free(out, FALSE);
    if (!media->role) media->role = g_strdup(strstr(wire, "a=setup:passive") ? "passive" : "active");
    return with_role(wire, media->role);
}

int kl_media_apply_answer(kl_media *media, const char *answer, char **error) {
    char *internal = with_directions(answer, always_sendrecv, NULL);
    int ok = set_description(media, "set-remote-description", GST_WEBRTC_SDP_TYPE_ANSWER, internal, error);
    g_free(internal);
    // The answerer took one role; this side has the other.
    if (ok && !media->role) {
        if (strstr(answer, "a=setup:active")) media->role = g_strdup("passive");
        if (strstr(answer, "a=setup:passive")) media->role = g_strdup("active");
    }
    return ok;
}

static gboolean add_stats(GQuark field, const GValue *value, gpointer data) {
    (void)field;
    kl_media_stats *stats = data;
    if (!GST_VALUE_HOLDS_STRUCTURE(value)) return TRUE;
    const GstStructure *entry = gst_value_get_structure(value);
    GstWebRTCStatsType type;
    if (!gst_structure_get_enum(entry, "type", GST_TYPE_WEBRTC_STATS_TYPE, (gint *)&type)) return TRUE;
    guint64 number;
    double seconds;
    switch (type) {
    case GST_WEBRTC_STATS_INBOUND_RTP:
        if (gst_structure_get_uint64(entry, "packets-received", &number)) stats->packets_received += number;
        if (gst_structure_get_uint64(entry, "bytes-received", &number)) stats->bytes_received += number;
        if (gst_structure_get_double(entry, "jitter", &seconds)) stats->jitter = seconds;
        break;
    case GST_WEBRTC_STATS_OUTBOUND_RTP:
        if (gst_structure_get_uint64(entry, "packets-sent", &number)) stats->packets_sent += number;
        if (gst_structure_get_uint64(entry, "bytes-sent", &number)) stats->bytes_sent += number;
        break;
    case GST_WEBRTC_STATS_REMOTE_INBOUND_RTP:
        if (gst_structure_get_double(entry, "round-trip-time", &seconds)) stats->round_trip_time = seconds;
        break;
    default:
        break;
    }
    return TRUE;
}

void kl_media_get_stats(kl_media *media, kl_media_stats *stats) {
    memset(stats, 0, sizeof *stats);
    stats->jitter = -1;
    stats->round_trip_time = -1;
    GstPromise *promise = gst_promise_new();
    g_signal_emit_by_name(media->webrtc, "get-stats", NULL, promise);
    GstStructure *reply = settle(promise, "stats", NULL);
    if (!reply) return;
    gst_structure_foreach(reply, add_stats, stats);
    gst_structure_free(reply);
}

void kl_media_free(kl_media *media) {
    if (!media) return;
    g_mutex_lock(&media->lock);
    GstElement *head = media->record_head;
    media->record_head = NULL;
    g_mutex_unlock(&media->lock);
    if (head) {
        // The recording's end, so that wavenc writes the final sizes into its header.
        GstPad *sink = gst_element_get_static_pad(head, "sink");
        gst_pad_send_event(sink, gst_event_new_eos());
        gst_object_unref(sink);
        gst_object_unref(head);
    }
    gst_element_set_state(media->pipeline, GST_STATE_NULL);
    gst_object_unref(media->webrtc);
    gst_object_unref(media->hold);
    gst_object_unref(media->pipeline);
    g_ptr_array_unref(media->candidates);
    g_free(media->record_path);
    g_free(media->role);
    g_mutex_clear(&media->lock);
    g_free(media);
}

void kl_media_free_string(char *string) { g_free(string); }
