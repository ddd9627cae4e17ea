//! Group statistics and advantage estimators (GRPO, Dr. GRPO, RLOO, REINFORCE++), as verl
//! and TRL define them.
