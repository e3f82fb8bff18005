"""Knowledge neurons (Dai et al. 2022) at every checkpoint: integrated-gradient attribution over MLP
hidden neurons (attribute.py), through the one forward, kcircuits.circuits.model.CircuitModel.run."""
