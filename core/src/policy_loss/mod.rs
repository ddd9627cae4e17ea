//! Per-token policy losses (PPO clip, dual-clip, GSPO, CISPO, SAPO), KL estimators and loss
//! aggregation, forward and gradient w.r.t. the log-probs.
