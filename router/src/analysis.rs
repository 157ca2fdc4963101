use crate::CompiledRouter;
