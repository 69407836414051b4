//! The skeletons libbpf-cargo generated in build.rs.

pub mod tcp_ca {
    include!(concat!(env!("OUT_DIR"), "/tcp_ca.skel.rs"));
}

pub mod tcp_ca_rejected {
    include!(concat!(env!("OUT_DIR"), "/tcp_ca_rejected.skel.rs"));
}
