"""mmgnn's Hydra sweeper plugin: GraphGym-style controlled random search over design factors."""
