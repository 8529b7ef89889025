/* Train a sparse model with C-GaP at 90% sparsity through the C API of the engine.
 *   train_engine [train_limit [test_limit [model [epochs]]]]   (defaults: 10000 2000 mlp 4)
 * Fashion-MNIST is read from /usr/share/datasets/fashion-mnist (COPPICE_DATA overrides). */
#include <coppice.h>
#include <stdio.h>
#include <stdlib.h>

#define CHECK(call)                                                                     \
  do {                                                                                  \
    coppice_status status_ = (call);                                                    \
    if (status_ != COPPICE_OK) {                                                        \
      fprintf(stderr, "%s failed: %s: %s\n", #call, coppice_status_name(status_),      \
              coppice_last_error());                                                    \
      goto done;                                                                        \
    }                                                                                   \
  } while (0)

static int on_epoch(int epoch, double loss, double accuracy, double sparsity, double seconds,
                    void *user_data) {
  (void)user_data;
  printf("epoch %d  loss %.4f  test accuracy %.2f%%  sparsity %.4f  %.1fs\n", epoch, loss,
         accuracy, sparsity, seconds);
  fflush(stdout);
  return 0; /* non-zero would stop training */
}

int main(int argc, char **argv) {
  int64_t train_limit = argc > 1 ? atoll(argv[1]) : 10000;
  int64_t test_limit = argc > 2 ? atoll(argv[2]) : 2000;
  const char *model_name = argc > 3 ? argv[3] : "mlp", *data = getenv("COPPICE_DATA");
  coppice_dataset *train = NULL, *test = NULL;
  coppice_model *model = NULL;
  coppice_train_config config;
  coppice_train_result result;
  int64_t parameters = 0, train_count = 0, test_count = 0;
  int exit_code = 1;

  printf("coppice %s\n", coppice_version());
  CHECK(coppice_dataset_load_idx(data, "train", train_limit, &train));
  CHECK(coppice_dataset_load_idx(data, "t10k", test_limit, &test));
  CHECK(coppice_dataset_count(train, &train_count));
  CHECK(coppice_dataset_count(test, &test_count));
  CHECK(coppice_model_create(model_name, 1, 10, &model));
  CHECK(coppice_model_parameter_count(model, &parameters));
  printf("%s: %lld parameters; %lld train / %lld test samples\n", model_name,
         (long long)parameters, (long long)train_count, (long long)test_count);

  coppice_train_config_init(&config);
  config.epochs = argc > 4 ? atoi(argv[4]) : 4;
  config.sparsity.method = "cgap";
  config.sparsity.sparsity = 0.9;
  config.sparsity.rounds = 1;
  config.on_epoch = on_epoch;
  CHECK(coppice_train(model, train, test, &config, &result));
  printf("C-GaP at 90%%: test accuracy %.2f%%, sparsity %.4f, %d epochs in %.1fs\n",
         result.test_accuracy, result.sparsity, result.epochs, result.train_seconds);
  exit_code = 0;
done:
  coppice_model_destroy(model);
  coppice_dataset_destroy(test);
  coppice_dataset_destroy(train);
  return exit_code;
}
