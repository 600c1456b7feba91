// The whole CPU model against an independent PyTorch implementation
// (tests/reference/igpt_reference.py, float64), through committed fixtures:
// probabilities, loss, every gradient, probe features, and 10 AdamW steps.
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "model/config.h"
#include "model/model.h"
#include "model/params.h"
#include "test.h"
#include "train/optim.h"

// max |a - b| / max |b|, b the reference.
static double relative_max_error(const float *a, const float *b, size_t n) {
    double err = 0, scale = 1e-30;
    for (size_t i = 0; i < n; i++) {
        err = fmax(err, fabs((double)a[i] - b[i]));
        scale = fmax(scale, fabs((double)b[i]));
    }
    return err / scale;
}

static void check_against_fixture(const char *file) {
    char *path = xasprintf("tests/fixtures/%s", file);
    Fixture fx = {0};
    bool loaded = fixture_load(path, &fx);
    CHECK(loaded, "%s loads (generate it with tests/reference/igpt_reference.py --write-fixtures tests/fixtures)",
          path);
    free(path);
    if (!loaded) return;
    const char *names[] = {"config",   "params",        "tokens",       "logits",           "loss",        "grads",
                           "features", "train_hparams", "train_losses", "train_grad_norms", "final_params"};
    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++)
        if (!fixture_get(&fx, names[i])) {
            CHECK(false, "%s: array '%s' missing", file, names[i]);
            fixture_free(&fx);
            return;
        }
    const int32_t *c = fixture_get(&fx, "config")->data;
    const int V = c[0], T = c[1], B = c[6];
    ModelConfig cfg = {.vocab_size = V,
                       .seq_len = T,
                       .image_height = 1,
                       .image_width = T,
                       .d_model = c[2],
                       .n_layer = c[3],
                       .n_head = c[4],
                       .norm = (NormKind)c[5]};
    Model m;
    model_create(&m, &cfg, B, 2);
    const FixtureArray *params = fixture_get(&fx, "params");
    CHECK(params->count == m.num_params, "%s: %zu parameters, the C layout has %zu", file, params->count, m.num_params);
    if (params->count != m.num_params) {
        model_free(&m);
        fixture_free(&fx);
        return;
    }
    memcpy(m.params, params->data, m.num_params * 4);
    const int32_t *tok32 = fixture_get(&fx, "tokens")->data;
    uint16_t *tokens = xmalloc((size_t)B * T * 2);
    for (int i = 0; i < B * T; i++) tokens[i] = (uint16_t)tok32[i];

    // Forward: probabilities (model_forward leaves softmax(logits)), loss, features.
    double loss = model_forward(&m, tokens, B);
    const float *ref_logits = fixture_get(&fx, "logits")->data;
    double worst_p = 0;
    for (int n = 0; n < B * T; n++) {
        double mx = -1e300, s = 0;
        for (int v = 0; v < V; v++) mx = fmax(mx, ref_logits[n * V + v]);
        for (int v = 0; v < V; v++) s += exp(ref_logits[n * V + v] - mx);
        for (int v = 0; v < V; v++)
            worst_p = fmax(worst_p, fabs(exp(ref_logits[n * V + v] - mx) / s - m.act.logits[(size_t)n * V + v]));
    }
    double ref_loss = *(const double *)fixture_get(&fx, "loss")->data;
    // Tolerances: fp32 against float64, O(1) values, a few layers deep.
    CHECK(worst_p < 1e-5, "%s: probabilities off by %.2e", file, worst_p);
    CHECK(fabs(loss - ref_loss) < 1e-5 * fabs(ref_loss), "%s: loss %.8f vs PyTorch %.8f", file, loss, ref_loss);
    float *features = xmalloc((size_t)B * (cfg.n_layer + 1) * cfg.d_model * 4);
    model_features(&m, B, features);
    double ef =
        relative_max_error(features, fixture_get(&fx, "features")->data, (size_t)B * (cfg.n_layer + 1) * cfg.d_model);
    CHECK(ef < 1e-5, "%s: probe features relative error %.2e", file, ef);

    // Backward: every gradient.
    model_zero_grads(&m);
    model_backward(&m, tokens, B, 1.0f / ((float)B * T));
    const float *ref_grads = fixture_get(&fx, "grads")->data;
    int nt = param_tensors(&cfg, NULL);
    TensorInfo *t = xcalloc((size_t)nt, sizeof *t);
    param_tensors(&cfg, t);
    for (int i = 0; i < nt; i++) {
        double e = relative_max_error(m.grads + t[i].offset, ref_grads + t[i].offset, t[i].count);
        CHECK(e < 1e-4, "%s: gradient of %s relative error %.2e", file, t[i].name, e);
    }

    // Ten AdamW steps on the same batch.
    const double *hp = fixture_get(&fx, "train_hparams")->data;
    OptimConfig oc = {.lr = hp[0],
                      .warmup_steps = (int64_t)hp[1],
                      .total_steps = (int64_t)hp[2],
                      .min_lr_frac = hp[3],
                      .beta1 = hp[4],
                      .beta2 = hp[5],
                      .eps = hp[6],
                      .weight_decay = hp[7],
                      .grad_clip = hp[8]};
    const double *ref_losses = fixture_get(&fx, "train_losses")->data,
                 *ref_norms = fixture_get(&fx, "train_grad_norms")->data;
    float *am = xcalloc(m.num_params, 4), *av = xcalloc(m.num_params, 4);
    for (int s = 0; s < oc.total_steps; s++) {
        model_zero_grads(&m);
        double l = model_forward(&m, tokens, B);
        model_backward(&m, tokens, B, 1.0f / ((float)B * T));
        double norm = global_norm(m.grads, m.num_params, 2);
        CHECK(fabs(l - ref_losses[s]) < 1e-4 * fabs(ref_losses[s]), "%s: step %d loss %.7f vs %.7f", file, s, l,
              ref_losses[s]);
        CHECK(fabs(norm - ref_norms[s]) < 1e-4 * ref_norms[s], "%s: step %d grad norm %.7f vs %.7f", file, s, norm,
              ref_norms[s]);
        adamw_update(&oc, &cfg, s, m.params, m.grads, am, av, clip_factor(&oc, norm), 2);
    }
    double ep = relative_max_error(m.params, fixture_get(&fx, "final_params")->data, m.num_params);
    CHECK(ep < 1e-4, "%s: parameters after %lld steps, relative error %.2e", file, (long long)oc.total_steps, ep);

    free(am);
    free(av);
    free(t);
    free(features);
    free(tokens);
    model_free(&m);
    fixture_free(&fx);
}

TEST(test_model_matches_pytorch_igpt_norm) { check_against_fixture("reference_igptnorm.bin"); }
TEST(test_model_matches_pytorch_layernorm) { check_against_fixture("reference_layernorm.bin"); }
