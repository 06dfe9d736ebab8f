// tfjs-core registers gradients of its own ops only when this module is loaded (the @tensorflow/tfjs
// umbrella does it); reference kernels and training need them, so core always loads it.
import '@tensorflow/tfjs-core/dist/register_all_gradients';
