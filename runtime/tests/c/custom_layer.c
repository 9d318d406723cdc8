/*
 * A custom layer through the C ABI: a model with a private YoloV5-style
 * "Focus" layer (space-to-depth: the 4 pixel phases concatenated on channels)
 * followed by a C "ChannelScale" layer that reads its weights from the .bin.
 * Checks the output against values computed here by the index formula, that
 * errors from the callbacks come back as the load / run error with their
 * message, and that every state made by create is destroyed. Exit status 0
 * on success.
 */
#include "eqrt.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int failures = 0;
static int live_states = 0;

#define CHECK(cond, ...)                                                    \
    do {                                                                    \
        if (!(cond)) {                                                      \
            fprintf(stderr, "line %d: ", __LINE__);                         \
            fprintf(stderr, __VA_ARGS__);                                   \
            fprintf(stderr, " (%s)\n", eq_last_error());                    \
            failures++;                                                     \
        }                                                                   \
    } while (0)

/* ---- Focus: out(k*c + q, y, x) = in(q, 2y + dy_k, 2x + dx_k),
   (dy, dx) = (0,0) (1,0) (0,1) (1,1). State: a counter of forward calls. */

static int focus_create(void *user_data, const eq_layer_params *params,
                        eq_weights *weights, void **state, char *error) {
    int fail_at_load = 0;
    (void)user_data;
    (void)weights;
    if (eq_layer_params_int(params, 0, 0, &fail_at_load) != EQ_OK) return 1;
    if (fail_at_load) {
        snprintf(error, EQ_CUSTOM_ERROR_LEN, "Focus: asked to fail (param 0 = %d)",
                 fail_at_load);
        return 1;
    }
    *state = calloc(1, sizeof(int));
    if (*state) live_states++;
    return *state ? 0 : 1;
}

static int focus_shapes(void *state, const eq_shape *in, size_t n_in, eq_shape *out,
                        size_t *n_out, char *error) {
    (void)state;
    if (n_in != 1 || in[0].dims != 3 || in[0].w % 2 || in[0].h % 2) {
        snprintf(error, EQ_CUSTOM_ERROR_LEN, "Focus needs one 3-D input of even w and h");
        return 1;
    }
    out[0] = in[0];
    out[0].w = in[0].w / 2;
    out[0].h = in[0].h / 2;
    out[0].c = in[0].c * 4;
    *n_out = 1;
    return 0;
}

static int focus_forward(void *state, const float *const *in, const eq_shape *in_shapes,
                         size_t n_in, float *const *out, const eq_shape *out_shapes,
                         size_t n_out, char *error) {
    static const int dy[4] = {0, 1, 0, 1}, dx[4] = {0, 0, 1, 1};
    int w = in_shapes[0].w, h = in_shapes[0].h, c = in_shapes[0].c;
    int ow = out_shapes[0].w, oh = out_shapes[0].h;
    int k, q, y, x;
    (void)error;
    if (n_in != 1 || n_out != 1) return 1;
    ++*(int *)state;
    for (k = 0; k < 4; k++)
        for (q = 0; q < c; q++)
            for (y = 0; y < oh; y++)
                for (x = 0; x < ow; x++)
                    out[0][((k * c + q) * oh + y) * ow + x] =
                        in[0][(q * h + 2 * y + dy[k]) * w + 2 * x + dx[k]];
    return 0;
}

static void focus_destroy(void *state) {
    free(state);
    live_states--;
}

/* ---- ChannelScale: channel q times weight q; param 0 = channels, param 1 =
   a float added after scaling; fails in forward when the input holds NaN. */

typedef struct {
    int channels;
    float bias;
    float scales[64];
} scale_state;

static int scale_create(void *user_data, const eq_layer_params *params,
                        eq_weights *weights, void **state, char *error) {
    scale_state *s = calloc(1, sizeof *s);
    (void)user_data;
    if (!s) return 1;
    if (eq_layer_params_int(params, 0, 0, &s->channels) != EQ_OK ||
        eq_layer_params_float(params, 1, 0.0f, &s->bias) != EQ_OK ||
        s->channels < 1 || s->channels > 64 ||
        eq_weights_read(weights, (size_t)s->channels, s->scales) != EQ_OK) {
        snprintf(error, EQ_CUSTOM_ERROR_LEN, "ChannelScale: %s", eq_last_error());
        free(s);
        return 1;
    }
    *state = s;
    live_states++;
    return 0;
}

static int scale_shapes(void *state, const eq_shape *in, size_t n_in, eq_shape *out,
                        size_t *n_out, char *error) {
    (void)error;
    if (n_in != 1 || in[0].c != ((scale_state *)state)->channels) return 2;
    out[0] = in[0];
    *n_out = 1;
    return 0;
}

static int scale_forward(void *state, const float *const *in, const eq_shape *in_shapes,
                         size_t n_in, float *const *out, const eq_shape *out_shapes,
                         size_t n_out, char *error) {
    const scale_state *s = state;
    size_t plane = (size_t)in_shapes[0].w * in_shapes[0].h * in_shapes[0].d, i;
    int q;
    (void)out_shapes;
    if (n_in != 1 || n_out != 1) return 1;
    for (q = 0; q < s->channels; q++)
        for (i = 0; i < plane; i++) {
            float v = in[0][q * plane + i];
            if (v != v) {
                snprintf(error, EQ_CUSTOM_ERROR_LEN, "ChannelScale: NaN input");
                return 1;
            }
            out[0][q * plane + i] = v * s->scales[q] + s->bias;
        }
    return 0;
}

static void scale_destroy(void *state) {
    free(state);
    live_states--;
}

static const char *PARAM =
    "7767517\n3 3\n"
    "Input in 0 1 data 0=6 1=4 2=2\n"
    "Focus focus 1 1 data f\n"
    "ChannelScale scale 1 1 f out 0=8 1=0.5\n";

static eq_options *options(void) {
    eq_options *opts = NULL;
    eq_custom_layer focus = {NULL, focus_create, focus_shapes, focus_forward, focus_destroy};
    eq_custom_layer scale = {NULL, scale_create, scale_shapes, scale_forward, scale_destroy};
    CHECK(eq_options_new(&opts) == EQ_OK, "eq_options_new");
    CHECK(eq_options_register_layer(opts, "Focus", &focus) == EQ_OK, "register Focus");
    CHECK(eq_options_register_layer(opts, "ChannelScale", &scale) == EQ_OK,
          "register ChannelScale");
    return opts;
}

int main(void) {
    float x[48], scales[8], out[48], want[48];
    eq_shape shape;
    size_t count = 0;
    eq_net *net = NULL;
    eq_options *opts = options();
    char param[512];
    int i, k, q, y, xx, status;

    for (i = 0; i < 48; i++) x[i] = (float)(i % 7) - 2.5f;
    for (i = 0; i < 8; i++) scales[i] = (float)(i + 1);
    for (k = 0; k < 4; k++)
        for (q = 0; q < 2; q++)
            for (y = 0; y < 2; y++)
                for (xx = 0; xx < 3; xx++) {
                    int dy = k % 2, dx = k / 2, ch = k * 2 + q;
                    want[(ch * 2 + y) * 3 + xx] =
                        x[(q * 4 + 2 * y + dy) * 6 + 2 * xx + dx] * scales[ch] + 0.5f;
                }

    status = eq_net_load_memory(PARAM, strlen(PARAM), scales, sizeof scales, opts, &net);
    CHECK(status == EQ_OK, "load: %s", eq_status_string(status));
    CHECK(live_states == 2, "live states %d after load", live_states);
    if (net) {
        CHECK(eq_net_set_input(net, "data", x, 48) == EQ_OK, "set_input");
        CHECK(eq_net_run(net) == EQ_OK, "run");
        CHECK(eq_net_get_output(net, "out", out, 48, &count, &shape) == EQ_OK, "get_output");
        CHECK(count == 48 && shape.dims == 3 && shape.w == 3 && shape.h == 2 && shape.c == 8,
              "output shape %d x %d x %d", shape.w, shape.h, shape.c);
        for (i = 0; i < 48; i++) CHECK(out[i] == want[i], "out[%d] = %g, want %g", i, out[i], want[i]);
        /* An error in forward is the run's error. */
        x[5] = 0.0f / 0.0f;
        CHECK(eq_net_set_input(net, "data", x, 48) == EQ_OK, "set_input");
        status = eq_net_run(net);
        CHECK(status == EQ_ERR_RUN, "run with NaN: %s", eq_status_string(status));
        CHECK(strstr(eq_last_error(), "layer `scale`") &&
              strstr(eq_last_error(), "ChannelScale: NaN input"), "forward error message");
        CHECK(eq_net_free(net) == EQ_OK, "free");
    }
    CHECK(live_states == 0, "live states %d after free", live_states);

    /* Errors at load: from create (with its message), from output_shapes (a
       generic message), and weights past the end of the .bin. */
    snprintf(param, sizeof param, "%s", PARAM);
    memcpy(strstr(param, "Focus focus 1 1 data f"), "Focus focus 1 1 data f 0=7", 26);
    strcpy(strstr(param, "0=7") + 3, "\nChannelScale scale 1 1 f out 0=8 1=0.5\n");
    status = eq_net_load_memory(param, strlen(param), scales, sizeof scales, opts, &net);
    CHECK(status == EQ_ERR_MODEL && net == NULL, "create failure: %s", eq_status_string(status));
    CHECK(strstr(eq_last_error(), "layer `focus` (Focus): Focus: asked to fail (param 0 = 7)"),
          "create error message");
    snprintf(param, sizeof param, "%s", PARAM);
    *strstr(param, "0=8") = ' ';
    memcpy(strstr(param, " =8"), "0=4", 3);
    status = eq_net_load_memory(param, strlen(param), scales, 4 * sizeof(float), opts, &net);
    CHECK(status == EQ_ERR_MODEL, "shape failure: %s", eq_status_string(status));
    CHECK(strstr(eq_last_error(), "custom layer output_shapes callback failed (returned 2)"),
          "output_shapes error message");
    status = eq_net_load_memory(PARAM, strlen(PARAM), scales, 7 * sizeof(float), opts, &net);
    CHECK(status == EQ_ERR_MODEL, "short weights: %s", eq_status_string(status));
    CHECK(strstr(eq_last_error(), "ChannelScale:"), "weights error message");
    CHECK(live_states == 0, "live states %d after failed loads", live_states);

    CHECK(eq_options_free(opts) == EQ_OK, "options_free");
    if (failures) {
        fprintf(stderr, "custom_layer: %d failures\n", failures);
        return 1;
    }
    printf("custom_layer: ok\n");
    return 0;
}
