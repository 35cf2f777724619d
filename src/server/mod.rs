pub mod h1_guard;
