/*
 * Calls every function declared in eqrt.h once through its prototype, so that
 * compiling with -Wall -Wextra -Werror and linking against the library checks
 * the header against the exported symbols. Only argument errors are exercised
 * here (examples/c/classify.c runs a model). Exit status 0 when every call
 * returns the expected code.
 */
#include "eqrt.h"

#include <stdio.h>
#include <string.h>

static int failures = 0;

static void expect(eq_status got, eq_status want, const char *call) {
    if (got != want) {
        fprintf(stderr, "%s: expected %s, got %s: %s\n", call, eq_status_string(want),
                eq_status_string(got), eq_last_error());
        failures++;
    }
}

int main(void) {
    eq_options *opts = NULL;
    eq_net *net = NULL;
    const char *name = NULL;
    size_t count = 0;
    eq_shape shape;
    float value = 0.0f;
    int cpu = 0;

    if (strlen(eq_version()) == 0) failures++;
    if (strcmp(eq_status_string(EQ_ERR_RUN), "EQ_ERR_RUN") != 0) failures++;

    expect(eq_options_new(&opts), EQ_OK, "eq_options_new");
    if (strcmp(eq_last_error(), "") != 0) failures++;
    expect(eq_options_set_threads(opts, -1), EQ_ERR_INVALID_ARGUMENT,
           "eq_options_set_threads");
    if (strlen(eq_last_error()) == 0) failures++;
    expect(eq_options_set_threads(opts, 1000000), EQ_ERR_INVALID_ARGUMENT,
           "eq_options_set_threads(1000000)");
    expect(eq_options_set_memory_limit(NULL, 1), EQ_ERR_NULL_POINTER,
           "eq_options_set_memory_limit(NULL)");
    {
        /* A 3x512x512 input needs 3 MiB of blob memory: over a 1 MiB limit. */
        static const char param[] = "7767517\n2 2\nInput data 0 1 data 0=512 1=512 2=3\n"
                                    "ReLU relu 1 1 data out\n";
        eq_options *small = NULL;
        eq_net *big = NULL;
        expect(eq_options_new(&small), EQ_OK, "eq_options_new");
        expect(eq_options_set_memory_limit(small, 1 << 20), EQ_OK,
               "eq_options_set_memory_limit");
        expect(eq_net_load_memory(param, sizeof param - 1, NULL, 0, small, &big), EQ_ERR_MODEL,
               "eq_net_load_memory over the memory limit");
        if (strstr(eq_last_error(), "memory limit") == NULL) failures++;
        expect(eq_options_set_memory_limit(small, 0), EQ_OK, "eq_options_set_memory_limit(0)");
        expect(eq_net_load_memory(param, sizeof param - 1, NULL, 0, small, &big), EQ_OK,
               "eq_net_load_memory without a limit");
        expect(eq_net_free(big), EQ_OK, "eq_net_free");
        expect(eq_options_free(small), EQ_OK, "eq_options_free");
    }
    expect(eq_options_set_fp16_weights(NULL, 1), EQ_ERR_NULL_POINTER,
           "eq_options_set_fp16_weights(NULL)");
    expect(eq_options_set_fp16_weights(opts, 1), EQ_OK, "eq_options_set_fp16_weights");
    expect(eq_options_set_cpus(opts, &cpu, 1), EQ_OK, "eq_options_set_cpus");
    expect(eq_options_set_cluster(opts, "nowhere"), EQ_ERR_INVALID_ARGUMENT,
           "eq_options_set_cluster");
    expect(eq_options_set_precision(opts, 99), EQ_ERR_INVALID_ARGUMENT,
           "eq_options_set_precision");
    expect(eq_options_set_input_shape(opts, "data", 3, 8, 8, 1, 3), EQ_OK,
           "eq_options_set_input_shape");

    expect(eq_net_load(NULL, "m.bin", opts, &net), EQ_ERR_NULL_POINTER, "eq_net_load");
    expect(eq_net_load_memory(NULL, 0, NULL, 0, opts, &net), EQ_ERR_NULL_POINTER,
           "eq_net_load_memory");
    expect(eq_net_input_count(NULL, &count), EQ_ERR_NULL_POINTER, "eq_net_input_count");
    expect(eq_net_input_name(NULL, 0, &name), EQ_ERR_NULL_POINTER, "eq_net_input_name");
    expect(eq_net_output_count(NULL, &count), EQ_ERR_NULL_POINTER, "eq_net_output_count");
    expect(eq_net_output_name(NULL, 0, &name), EQ_ERR_NULL_POINTER, "eq_net_output_name");
    expect(eq_net_blob_shape(NULL, "data", &shape), EQ_ERR_NULL_POINTER,
           "eq_net_blob_shape");
    expect(eq_net_set_input(NULL, "data", &value, 1), EQ_ERR_NULL_POINTER,
           "eq_net_set_input");
    expect(eq_net_run(NULL), EQ_ERR_NULL_POINTER, "eq_net_run");
    expect(eq_net_get_output(NULL, "prob", &value, 1, &count, &shape), EQ_ERR_NULL_POINTER,
           "eq_net_get_output");
    {
        eq_custom_layer layer;
        int iv = 0;
        memset(&layer, 0, sizeof layer);
        expect(eq_options_register_layer(opts, "Focus", NULL), EQ_ERR_NULL_POINTER,
               "eq_options_register_layer");
        expect(eq_options_register_layer(opts, "Focus", &layer), EQ_ERR_INVALID_ARGUMENT,
               "eq_options_register_layer without callbacks");
        expect(eq_layer_params_int(NULL, 0, 0, &iv), EQ_ERR_NULL_POINTER,
               "eq_layer_params_int");
        expect(eq_layer_params_float(NULL, 0, 0.0f, &value), EQ_ERR_NULL_POINTER,
               "eq_layer_params_float");
        expect(eq_weights_read(NULL, 1, &value), EQ_ERR_NULL_POINTER, "eq_weights_read");
    }
    expect(eq_net_free(NULL), EQ_OK, "eq_net_free");
    expect(eq_options_free(opts), EQ_OK, "eq_options_free");
    expect(eq_options_free(opts), EQ_ERR_INVALID_HANDLE, "eq_options_free twice");

    if (failures) {
        fprintf(stderr, "all_functions: %d failures\n", failures);
        return 1;
    }
    printf("all_functions: ok\n");
    return 0;
}
