#ifndef CANDLECAST_LSTM_CELL_H
#define CANDLECAST_LSTM_CELL_H

/// The training loop's elementwise arithmetic in float: the LSTM cell, for the units [lower, upper) of one sample: C so that the compiler
/// vectorises it, with a build for AVX-512, one for AVX2 and a baseline one, chosen when the library loads
/// (target_clones), and Adam's update. Scalar libm expf for the three sigmoids of every unit was a sixth of training time.
/// `gates` and `gate_gradients` point at a sample's row of 4 * units values (gate blocks i, f, g, o, `units` apart);
/// every other pointer at that sample's block of `units`. Activation: 0 relu, 1 tanh, 2 linear.

/// Forward: turns the pre-activations in `gates` into the gate activations (in place) and writes c_t,
/// activation(c_t) and h_t.
void candlecast_lstm_forward(float *gates, int units, int lower, int upper, const float *previous_cells, float *cells,
                             float *activated_cells, float *hidden, int activation);

/// Backward: from the gate activations, the states and dL/dh_t, writes dL/d(pre-activations) and carries dL/dc one
/// step back in `cell_gradient` (in place).
void candlecast_lstm_backward(const float *gates, float *gate_gradients, int units, int lower, int upper,
                              const float *previous_cells, const float *cells, const float *activated_cells,
                              const float *hidden_gradient, float *cell_gradient, int activation);

/// One Adam step (Keras's rule, the bias corrections folded into `step_size`) on the parameters [lower, upper):
/// vectorised here for the same reason.
void candlecast_adam_update(float *weights, const float *gradients, float *first_moment, float *second_moment, int lower,
                            int upper, float step_size, float beta1, float beta2, float epsilon);

/// The exponential the forward pass uses (Cephes' expf, within 2 ulp of libm on [-87, 88], x clamped to that range).
float candlecast_lstm_exp(float x);

#endif
