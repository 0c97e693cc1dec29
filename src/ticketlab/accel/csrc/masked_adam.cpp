// Masked Adam/AdamW steps of float32 tensors: torch's fused CPU step with the gradient multiplied by a 0/1 byte mask
// first, in one pass (adam_math.h). Same bits as `grad.mul_(float_mask)` followed by
// torch.optim.Adam(fused=True).step(). Why hand-written: torch has no masked optimizer, and the separate mask pass was
// the whole of masked training's overhead on two threads (docs/speed.md).
#include <torch/extension.h>

#include <vector>

#include "adam_math.h"

// One step of every tensor i, as torch's fused step of the list: params[i] from grads[i] (masked by masks[i] where it
// has elements), with its moments and its step count steps[i] (a float32 scalar, counted here as torch counts it).
// One call for all of a model's tensors, unpruned ones included: a call per tensor plus torch's own step for the rest
// cost more than the arithmetic on LeNet-300-100 (2 threads: 0.30 ms a step against torch's 0.17 ms).
void adam_steps_(const std::vector<at::Tensor>& params, const std::vector<at::Tensor>& grads,
                 const std::vector<at::Tensor>& exp_avgs, const std::vector<at::Tensor>& exp_avg_sqs,
                 const std::vector<at::Tensor>& masks, const std::vector<at::Tensor>& steps, double lr, double beta1,
                 double beta2, double weight_decay, double eps, bool adamw) {
  const size_t n = params.size();
  TORCH_CHECK(grads.size() == n && exp_avgs.size() == n && exp_avg_sqs.size() == n && masks.size() == n &&
              steps.size() == n, "adam_steps_: lists of different lengths");
  for (size_t i = 0; i < n; i++) {
    for (const auto& t : {params[i], grads[i], exp_avgs[i], exp_avg_sqs[i]}) {
      TORCH_CHECK(t.device().is_cpu() && t.scalar_type() == at::kFloat && t.is_contiguous(),
                  "adam_steps_: contiguous float32 CPU tensors only");
      TORCH_CHECK(t.numel() == params[i].numel(), "adam_steps_: tensors of different sizes");
    }
    const at::Tensor& mask = masks[i];
    TORCH_CHECK(mask.numel() == 0 || (mask.scalar_type() == at::kByte && mask.is_contiguous() &&
                                      mask.numel() == params[i].numel()),
                "adam_steps_: a mask must be a contiguous uint8 tensor of its parameter's size, or empty");
    TORCH_CHECK(steps[i].numel() == 1 && steps[i].scalar_type() == at::kFloat && steps[i].device().is_cpu(),
                "adam_steps_: step counts must be float32 CPU scalars");
  }
  for (size_t i = 0; i < n; i++) {
    float* step = steps[i].data_ptr<float>();
    *step += 1.f;
    ticketlab_adam::adam_step(params[i].data_ptr<float>(), grads[i].data_ptr<float>(), exp_avgs[i].data_ptr<float>(),
                              exp_avg_sqs[i].data_ptr<float>(),
                              masks[i].numel() ? masks[i].data_ptr<uint8_t>() : nullptr, params[i].numel(), *step, lr,
                              beta1, beta2, weight_decay, eps, adamw);
  }
}

PYBIND11_MODULE(TORCH_EXTENSION_NAME, m) {
  m.def("adam_steps_", &adam_steps_, "masked fused Adam/AdamW steps of a list of tensors (float32, CPU)");
}
