/*
 * classify: runs a model through the eq-runtime C API and prints the top
 * values of every output, then checks that misuse is reported as error codes.
 *
 *     classify                          built-in model, loaded from memory
 *     classify M.param M.bin [IN.npy]   a model from files; the first input is
 *                                       read from a float32 .npy (else a ramp)
 *
 * Options (before the files): --threads N, --cluster big|little|all|cpus=..,
 * --precision auto|fp32|int8|int7.
 *
 * Build (see scripts/test-c-abi.sh):
 *     cc -I runtime/include examples/c/classify.c \
 *        target/release/libeq_runtime.a -lpthread -ldl -lm -o classify
 *
 * Exit status: 0 on success, 1 on any unexpected result.
 */
#include "eqrt.h"

#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define TOP_K 5

/* Prints the failure and returns 1 when `status` is not EQ_OK. */
static int failed(eq_status status, const char *what) {
    if (status == EQ_OK) return 0;
    fprintf(stderr, "classify: %s: %s: %s\n", what, eq_status_string(status),
            eq_last_error());
    return 1;
}

/* ---------------------------------------------------------- built-in model */

/* data(8) -> InnerProduct 5 with bias -> Softmax = prob. */
static const char BUILTIN_PARAM[] =
    "7767517\n"
    "3 3\n"
    "Input data 0 1 data 0=8\n"
    "InnerProduct fc 1 1 data fc 0=5 1=1 2=40\n"
    "Softmax prob 1 1 fc prob\n";

enum { BUILTIN_IN = 8, BUILTIN_OUT = 5 };

/* The .bin: a zero flag word (fp32 weights), weights [5][8], then 5 biases. */
static size_t builtin_bin(unsigned char *buf) {
    size_t n = 0;
    uint32_t tag = 0;
    memcpy(buf, &tag, 4);
    n += 4;
    for (int o = 0; o < BUILTIN_OUT; o++) {
        for (int i = 0; i < BUILTIN_IN; i++) {
            float w = (float)((o + 1) * (i % 3 == o % 3 ? 1 : -1)) * 0.1f;
            memcpy(buf + n, &w, 4);
            n += 4;
        }
    }
    for (int o = 0; o < BUILTIN_OUT; o++) {
        float b = 0.05f * (float)o;
        memcpy(buf + n, &b, 4);
        n += 4;
    }
    return n;
}

/* ------------------------------------------------------------------- input */

/* Reads a little-endian float32 .npy; returns the values (malloc) or NULL. */
static float *read_npy(const char *path, size_t *count) {
    FILE *f = fopen(path, "rb");
    if (!f) {
        perror(path);
        return NULL;
    }
    unsigned char head[12];
    float *data = NULL;
    if (fread(head, 1, 10, f) != 10 || memcmp(head, "\x93NUMPY", 6) != 0) {
        fprintf(stderr, "classify: %s: not a .npy file\n", path);
        goto done;
    }
    size_t header_len = head[8] | (size_t)head[9] << 8;
    if (head[6] >= 2) { /* version 2 and 3: 4-byte header length */
        if (fread(head + 10, 1, 2, f) != 2) goto done;
        header_len |= (size_t)head[10] << 16 | (size_t)head[11] << 24;
    }
    char *header = malloc(header_len + 1);
    if (!header || fread(header, 1, header_len, f) != header_len) {
        free(header);
        goto done;
    }
    header[header_len] = 0;
    int ok = strstr(header, "'<f4'") && strstr(header, "'fortran_order': False");
    free(header);
    if (!ok) {
        fprintf(stderr, "classify: %s: expected C-ordered float32 ('<f4')\n", path);
        goto done;
    }
    long start = ftell(f);
    fseek(f, 0, SEEK_END);
    long end = ftell(f);
    fseek(f, start, SEEK_SET);
    *count = (size_t)(end - start) / sizeof(float);
    data = malloc(*count * sizeof(float) + 1);
    if (data && fread(data, sizeof(float), *count, f) != *count) {
        free(data);
        data = NULL;
    }
done:
    fclose(f);
    return data;
}

/* ------------------------------------------------------------------ output */

/* Prints an output's shape and its TOP_K largest values with their indices. */
static int print_output(eq_net *net, const char *name) {
    size_t count = 0;
    eq_shape shape;
    /* First a size query, then the copy. */
    if (failed(eq_net_get_output(net, name, NULL, 0, &count, &shape), name)) return 1;
    float *values = malloc(count * sizeof(float));
    if (!values) return 1;
    if (failed(eq_net_get_output(net, name, values, count, NULL, NULL), name)) {
        free(values);
        return 1;
    }
    printf("output %s: dims %d  w %d  h %d  d %d  c %d  (%zu values)\n", name,
           shape.dims, shape.w, shape.h, shape.d, shape.c, count);
    int shown[TOP_K];
    int k = count < TOP_K ? (int)count : TOP_K;
    for (int t = 0; t < k; t++) {
        int best = -1;
        for (size_t i = 0; i < count; i++) {
            int taken = 0;
            for (int s = 0; s < t; s++) taken |= shown[s] == (int)i;
            if (!taken && (best < 0 || values[i] > values[best])) best = (int)i;
        }
        shown[t] = best;
        printf("  top %d: index %d  value %.6f\n", t + 1, best, values[best]);
    }
    free(values);
    return 0;
}

/* --------------------------------------------------------------- misuse */

static int expect_code(eq_status got, eq_status want, const char *what) {
    if (got != want) {
        fprintf(stderr, "classify: %s: expected %s, got %s (%s)\n", what,
                eq_status_string(want), eq_status_string(got), eq_last_error());
        return 1;
    }
    printf("  %-34s -> %s: %s\n", what, eq_status_string(got), eq_last_error());
    return 0;
}

/* Every misuse below must come back as the given code, never crash. */
static int check_error_paths(eq_net *net, const char *input, size_t input_len,
                             const char *output) {
    int bad = 0;
    float one[1] = {1.0f}, small[1];
    size_t count = 0;
    const char *name = NULL;
    static const char not_utf8[] = {'d', (char)0xff, 0};

    printf("error paths:\n");
    bad |= expect_code(eq_net_set_input(net, "no_such_blob", one, 1),
                       EQ_ERR_UNKNOWN_BLOB, "set_input(unknown name)");
    if (input_len != 1)
        bad |= expect_code(eq_net_set_input(net, input, one, 1), EQ_ERR_SHAPE,
                           "set_input(wrong size)");
    bad |= expect_code(eq_net_set_input(net, not_utf8, one, 1), EQ_ERR_UTF8,
                       "set_input(name not UTF-8)");
    bad |= expect_code(eq_net_set_input(net, input, NULL, input_len),
                       EQ_ERR_NULL_POINTER, "set_input(NULL data)");
    bad |= expect_code(eq_net_get_output(net, output, small, 0, &count, NULL),
                       EQ_ERR_BUFFER_TOO_SMALL, "get_output(capacity 0)");
    printf("  %-34s    required size reported: %zu\n", "", count);
    bad |= expect_code(eq_net_get_output(net, "no_such_blob", small, 1, NULL, NULL),
                       EQ_ERR_UNKNOWN_BLOB, "get_output(unknown name)");
    bad |= expect_code(eq_net_input_name(net, 1000, &name), EQ_ERR_INVALID_ARGUMENT,
                       "input_name(index out of range)");
    bad |= expect_code(eq_net_run(NULL), EQ_ERR_NULL_POINTER, "run(NULL)");
    bad |= expect_code(eq_options_set_precision(NULL, EQ_PRECISION_FP32),
                       EQ_ERR_NULL_POINTER, "options_set_precision(NULL)");

    eq_options *opts = NULL;
    if (failed(eq_options_new(&opts), "eq_options_new")) return 1;
    bad |= expect_code(eq_options_set_cluster(opts, "fastest"),
                       EQ_ERR_INVALID_ARGUMENT, "options_set_cluster(\"fastest\")");
    bad |= expect_code(eq_options_set_threads(opts, -2), EQ_ERR_INVALID_ARGUMENT,
                       "options_set_threads(-2)");
    bad |= expect_code(eq_options_free(opts), EQ_OK, "options_free");
    bad |= expect_code(eq_options_free(opts), EQ_ERR_INVALID_HANDLE,
                       "options_free(again)");

    eq_net *broken = NULL;
    static const char bad_param[] = "7767517\n1 1\nBogus\n";
    bad |= expect_code(eq_net_load_memory(bad_param, strlen(bad_param), NULL, 0, NULL,
                                          &broken),
                       EQ_ERR_PARSE, "load_memory(bad param)");
    bad |= expect_code(eq_net_load("/nonexistent.param", "/nonexistent.bin", NULL,
                                   &broken),
                       EQ_ERR_IO, "load(missing file)");
    if (broken != NULL) {
        fprintf(stderr, "classify: a failed load must leave *out NULL\n");
        bad = 1;
    }
    return bad;
}

/* ------------------------------------------------------------------- main */

static int parse_precision(const char *s) {
    static const char *names[] = {"auto", "fp32", "int8", "int7"};
    for (int i = 0; i < 4; i++)
        if (strcmp(s, names[i]) == 0) return i; /* = EQ_PRECISION_* */
    return -1;
}

int main(int argc, char **argv) {
    eq_options *opts = NULL;
    eq_net *net = NULL;
    float *input = NULL;
    int status = 1;

    printf("eq-runtime %s\n", eq_version());
    if (failed(eq_options_new(&opts), "eq_options_new")) return 1;
    int arg = 1;
    for (; arg + 1 < argc && strncmp(argv[arg], "--", 2) == 0; arg += 2) {
        const char *flag = argv[arg], *value = argv[arg + 1];
        eq_status s = EQ_ERR_INVALID_ARGUMENT;
        if (strcmp(flag, "--threads") == 0)
            s = eq_options_set_threads(opts, atoi(value));
        else if (strcmp(flag, "--cluster") == 0)
            s = eq_options_set_cluster(opts, value);
        else if (strcmp(flag, "--precision") == 0)
            s = eq_options_set_precision(opts, parse_precision(value));
        else
            fprintf(stderr, "classify: unknown option %s\n", flag);
        if (failed(s, flag)) goto done;
    }
    int files = argc - arg;
    if (files == 0) {
        static unsigned char bin[4 + 4 * (BUILTIN_IN + 1) * BUILTIN_OUT];
        size_t bin_len = builtin_bin(bin);
        printf("model: built-in (from memory)\n");
        if (failed(eq_net_load_memory(BUILTIN_PARAM, strlen(BUILTIN_PARAM), bin, bin_len,
                                      opts, &net),
                   "eq_net_load_memory"))
            goto done;
    } else if (files == 2 || files == 3) {
        printf("model: %s + %s\n", argv[arg], argv[arg + 1]);
        if (failed(eq_net_load(argv[arg], argv[arg + 1], opts, &net), "eq_net_load"))
            goto done;
    } else {
        fprintf(stderr, "usage: classify [--threads N] [--cluster C] [--precision P] "
                        "[M.param M.bin [INPUT.npy]]\n");
        goto done;
    }
    /* The net keeps its own copy of the options. */
    eq_options_free(opts);
    opts = NULL;

    size_t inputs = 0, outputs = 0;
    if (failed(eq_net_input_count(net, &inputs), "eq_net_input_count") ||
        failed(eq_net_output_count(net, &outputs), "eq_net_output_count"))
        goto done;
    if (inputs == 0 || outputs == 0) {
        fprintf(stderr, "classify: the model needs an input and an output\n");
        goto done;
    }
    const char *in_name = NULL, *out_name = NULL;
    eq_shape in_shape;
    if (failed(eq_net_input_name(net, 0, &in_name), "eq_net_input_name") ||
        failed(eq_net_output_name(net, 0, &out_name), "eq_net_output_name") ||
        failed(eq_net_blob_shape(net, in_name, &in_shape), "eq_net_blob_shape"))
        goto done;
    size_t in_len = (size_t)in_shape.w * in_shape.h * in_shape.d * in_shape.c;
    printf("input %s: dims %d  w %d  h %d  d %d  c %d\n", in_name, in_shape.dims,
           in_shape.w, in_shape.h, in_shape.d, in_shape.c);

    size_t got = in_len;
    if (files == 3) {
        input = read_npy(argv[arg + 2], &got);
        if (!input) goto done;
    } else {
        input = malloc(in_len * sizeof(float));
        if (!input) goto done;
        for (size_t i = 0; i < in_len; i++) input[i] = sinf(0.1f * (float)i);
    }
    /* Further inputs, if any, stay zero. */
    if (failed(eq_net_set_input(net, in_name, input, got), in_name) ||
        failed(eq_net_run(net), "eq_net_run"))
        goto done;
    for (size_t i = 0; i < outputs; i++) {
        const char *name = NULL;
        if (failed(eq_net_output_name(net, i, &name), "eq_net_output_name") ||
            print_output(net, name))
            goto done;
    }

    if (check_error_paths(net, in_name, in_len, out_name)) goto done;
    /* The net still works after all that. */
    if (failed(eq_net_set_input(net, in_name, input, got), in_name) ||
        failed(eq_net_run(net), "eq_net_run again"))
        goto done;
    if (failed(eq_net_free(net), "eq_net_free")) goto done;
    if (expect_code(eq_net_run(net), EQ_ERR_INVALID_HANDLE, "run(freed net)") ||
        expect_code(eq_net_free(net), EQ_ERR_INVALID_HANDLE, "free(freed net)"))
        goto done;
    net = NULL;
    printf("classify: ok\n");
    status = 0;
done:
    free(input);
    eq_net_free(net);
    eq_options_free(opts);
    return status;
}
