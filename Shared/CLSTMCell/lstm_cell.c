#include "candlecast_lstm_cell.h"

#include <math.h>
#include <stdint.h>
#include <string.h>

// The same arithmetic in every build: no fused multiply-adds where AVX2 and AVX-512 have them and the baseline not.
#pragma clang fp contract(off)

#if defined(__x86_64__) && defined(__clang__)
#define CANDLECAST_CLONES __attribute__((target_clones("avx512f", "avx2", "default")))
#else
#define CANDLECAST_CLONES
#endif

// e^x = 2^n e^r, n = round(x / ln 2), r = x - n ln 2 in two parts, e^r by a degree-6 polynomial; branch-free so that
// loops calling it vectorise.
static inline __attribute__((always_inline)) float exp_poly(float x) {
    x = x < -87.0f ? -87.0f : x;
    x = x > 88.0f ? 88.0f : x;
    // Adding 1.5 * 2^23 rounds to the nearest integer and leaves it in the low mantissa bits.
    const float shifted = x * 1.44269504f + 12582912.0f;
    const float n = shifted - 12582912.0f;
    const float r = x - n * 0.693359375f - n * -2.12194440e-4f;
    float p = 1.9875691500e-4f;
    p = p * r + 1.3981999507e-3f;
    p = p * r + 8.3334519073e-3f;
    p = p * r + 4.1665795894e-2f;
    p = p * r + 1.6666665459e-1f;
    p = p * r + 5.0000001201e-1f;
    const float er = p * r * r + r + 1.0f;
    int32_t bits;
    memcpy(&bits, &shifted, sizeof bits);
    const int32_t exponent = (bits - 0x4B400000 + 127) << 23;
    float scale;
    memcpy(&scale, &exponent, sizeof scale);
    return er * scale;
}

float candlecast_lstm_exp(float x) { return exp_poly(x); }

static inline __attribute__((always_inline)) float sigmoid(float x) { return 1.0f / (1.0f + exp_poly(-x)); }
static inline __attribute__((always_inline)) float relu(float x) { return x > 0.0f ? x : 0.0f; }
static inline __attribute__((always_inline)) float step(float x) { return x > 0.0f ? 1.0f : 0.0f; }

// A run of units whose length the vectoriser sees; `lstm_forward`/`lstm_backward` below call it for the whole vectors of
// a run, then once more for its last few units copied into a padded block of VECTOR (a scalar remainder loop would
// otherwise take as long as all the vectors).
#define VECTOR 16

static inline __attribute__((always_inline)) void forward_run(
    float *restrict input, float *restrict forget, float *restrict candidate, float *restrict output, int lower, int upper,
    const float *restrict previous_cells, float *restrict cells, float *restrict activated_cells, float *restrict hidden,
    int is_relu) {
    for (int u = lower; u < upper; u++) {
        const float i = sigmoid(input[u]);
        const float f = sigmoid(forget[u]);
        const float g = is_relu ? relu(candidate[u]) : candidate[u];
        const float o = sigmoid(output[u]);
        input[u] = i;
        forget[u] = f;
        candidate[u] = g;
        output[u] = o;
        const float c = f * previous_cells[u] + i * g;
        const float a = is_relu ? relu(c) : c;
        cells[u] = c;
        activated_cells[u] = a;
        hidden[u] = o * a;
    }
}

CANDLECAST_CLONES
void candlecast_lstm_forward(float *restrict gates, int units, int lower, int upper, const float *restrict previous_cells,
                             float *restrict cells, float *restrict activated_cells, float *restrict hidden,
                             int activation) {
    float *restrict input = gates;
    float *restrict forget = gates + units;
    float *restrict candidate = gates + 2 * units;
    float *restrict output = gates + 3 * units;
    if (activation == 1) {
        // tanh: libm's tanhf is not vectorised; the sigmoids still are.
        for (int u = lower; u < upper; u++) {
            input[u] = sigmoid(input[u]);
            forget[u] = sigmoid(forget[u]);
            output[u] = sigmoid(output[u]);
        }
        for (int u = lower; u < upper; u++) {
            const float g = tanhf(candidate[u]);
            candidate[u] = g;
            const float c = forget[u] * previous_cells[u] + input[u] * g;
            const float a = tanhf(c);
            cells[u] = c;
            activated_cells[u] = a;
            hidden[u] = output[u] * a;
        }
        return;
    }
    const int is_relu = activation == 0;
    const int vectors_end = upper < lower ? lower : lower + (upper - lower) / VECTOR * VECTOR;
    forward_run(input, forget, candidate, output, lower, vectors_end, previous_cells, cells, activated_cells, hidden, is_relu);
    const int rest = upper - vectors_end;
    if (rest <= 0) return;
    float block[9][VECTOR] = {{0}};
    for (int k = 0; k < rest; k++) {
        const int u = vectors_end + k;
        block[0][k] = input[u], block[1][k] = forget[u], block[2][k] = candidate[u], block[3][k] = output[u];
        block[4][k] = previous_cells[u];
    }
    forward_run(block[0], block[1], block[2], block[3], 0, VECTOR, block[4], block[5], block[6], block[7], is_relu);
    for (int k = 0; k < rest; k++) {
        const int u = vectors_end + k;
        input[u] = block[0][k], forget[u] = block[1][k], candidate[u] = block[2][k], output[u] = block[3][k];
        cells[u] = block[5][k], activated_cells[u] = block[6][k], hidden[u] = block[7][k];
    }
}

static inline __attribute__((always_inline)) void backward_run(
    const float *restrict input, const float *restrict forget, const float *restrict candidate,
    const float *restrict output, float *restrict input_gradient, float *restrict forget_gradient,
    float *restrict candidate_gradient, float *restrict output_gradient, int lower, int upper,
    const float *restrict previous_cells, const float *restrict cells, const float *restrict activated_cells,
    const float *restrict hidden_gradient, float *restrict cell_gradient, int activation) {
    for (int u = lower; u < upper; u++) {
        const float i = input[u], f = forget[u], g = candidate[u], o = output[u];
        const float a = activated_cells[u];
        const float dh = hidden_gradient[u];
        // The derivatives through the activations' outputs (relu: output > 0 exactly when input > 0).
        const float cell_derivative = activation == 0 ? step(cells[u]) : (activation == 1 ? 1.0f - a * a : 1.0f);
        const float candidate_derivative = activation == 0 ? step(g) : (activation == 1 ? 1.0f - g * g : 1.0f);
        const float dc = dh * o * cell_derivative + cell_gradient[u];
        input_gradient[u] = dc * g * i * (1.0f - i);
        forget_gradient[u] = dc * previous_cells[u] * f * (1.0f - f);
        candidate_gradient[u] = dc * i * candidate_derivative;
        output_gradient[u] = dh * a * o * (1.0f - o);
        cell_gradient[u] = dc * f;
    }
}

CANDLECAST_CLONES
void candlecast_lstm_backward(const float *restrict gates, float *restrict gate_gradients, int units, int lower, int upper,
                              const float *restrict previous_cells, const float *restrict cells,
                              const float *restrict activated_cells, const float *restrict hidden_gradient,
                              float *restrict cell_gradient, int activation) {
    const float *g[4] = {gates, gates + units, gates + 2 * units, gates + 3 * units};
    float *d[4] = {gate_gradients, gate_gradients + units, gate_gradients + 2 * units, gate_gradients + 3 * units};
    const int vectors_end = upper < lower ? lower : lower + (upper - lower) / VECTOR * VECTOR;
    backward_run(g[0], g[1], g[2], g[3], d[0], d[1], d[2], d[3], lower, vectors_end, previous_cells, cells, activated_cells,
                 hidden_gradient, cell_gradient, activation);
    const int rest = upper - vectors_end;
    if (rest <= 0) return;
    float block[14][VECTOR] = {{0}};
    for (int k = 0; k < rest; k++) {
        const int u = vectors_end + k;
        for (int gate = 0; gate < 4; gate++) block[gate][k] = g[gate][u];
        block[8][k] = previous_cells[u], block[9][k] = cells[u], block[10][k] = activated_cells[u];
        block[11][k] = hidden_gradient[u], block[12][k] = cell_gradient[u];
    }
    backward_run(block[0], block[1], block[2], block[3], block[4], block[5], block[6], block[7], 0, VECTOR, block[8], block[9],
                 block[10], block[11], block[12], activation);
    for (int k = 0; k < rest; k++) {
        const int u = vectors_end + k;
        for (int gate = 0; gate < 4; gate++) d[gate][u] = block[4 + gate][k];
        cell_gradient[u] = block[12][k];
    }
}

CANDLECAST_CLONES
void candlecast_adam_update(float *restrict weights, const float *restrict gradients, float *restrict first_moment,
                            float *restrict second_moment, int lower, int upper, float step_size, float beta1,
                            float beta2, float epsilon) {
    const float one_minus_beta1 = 1.0f - beta1;
    const float one_minus_beta2 = 1.0f - beta2;
    for (int index = lower; index < upper; index++) {
        const float g = gradients[index];
        first_moment[index] += (g - first_moment[index]) * one_minus_beta1;
        second_moment[index] += (g * g - second_moment[index]) * one_minus_beta2;
        weights[index] -= step_size * first_moment[index] / (sqrtf(second_moment[index]) + epsilon);
    }
}
