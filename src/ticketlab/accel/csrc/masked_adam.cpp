// Masked Adam/AdamW step for one float32 tensor: torch's fused CPU step with the gradient multiplied by a 0/1 byte
// mask first, in one pass (adam_math.h). Same bits as `grad.mul_(float_mask)` followed by
// torch.optim.Adam(fused=True).step(). Why hand-written: torch has no masked optimizer, and the separate mask pass was
// the whole of masked training's overhead on two threads (docs/speed.md).
#include <torch/extension.h>

#include "adam_math.h"

void masked_adam_(at::Tensor param, at::Tensor grad, at::Tensor exp_avg, at::Tensor exp_avg_sq, at::Tensor mask,
                  double step, double lr, double beta1, double beta2, double weight_decay, double eps, bool adamw) {
  for (const auto& t : {param, grad, exp_avg, exp_avg_sq}) {
    TORCH_CHECK(t.device().is_cpu() && t.scalar_type() == at::kFloat && t.is_contiguous(),
                "masked_adam_: contiguous float32 CPU tensors only");
    TORCH_CHECK(t.numel() == param.numel(), "masked_adam_: tensors of different sizes");
  }
  TORCH_CHECK(mask.scalar_type() == at::kByte && mask.is_contiguous() && mask.numel() == param.numel(),
              "masked_adam_: the mask must be a contiguous uint8 tensor of the parameter's size");
  ticketlab_adam::adam_step(param.data_ptr<float>(), grad.data_ptr<float>(), exp_avg.data_ptr<float>(),
                            exp_avg_sq.data_ptr<float>(), mask.data_ptr<uint8_t>(), param.numel(), step, lr, beta1,
                            beta2, weight_decay, eps, adamw);
}

PYBIND11_MODULE(TORCH_EXTENSION_NAME, m) {
  m.def("masked_adam_", &masked_adam_, "masked fused Adam/AdamW step (float32, CPU)");
}
