"""The studies behind the notebooks, one module each (adversarial, jin, farmur, bald_grad, calibration)."""
