//! Connected components over a profile's edges (petgraph's union-find).

use petgraph::unionfind::UnionFind;

/// Component label (0..k, numbered by first appearance) of each of `n` nodes.
pub fn components(n: usize, edges: impl IntoIterator<Item = (usize, usize)>) -> Vec<usize> {
    let mut uf = UnionFind::<usize>::new(n);
    for (a, b) in edges {
        uf.union(a, b);
    }
    let mut label_of_root = vec![usize::MAX; n];
    let mut next = 0;
    (0..n)
        .map(|i| {
            let r = uf.find(i);
            if label_of_root[r] == usize::MAX {
                label_of_root[r] = next;
                next += 1;
            }
            label_of_root[r]
        })
        .collect()
}

#[cfg(test)]
mod tests {
    #[test]
    fn labels_components_in_order() {
        assert_eq!(super::components(5, [(0, 2), (3, 4)]), vec![0, 1, 0, 2, 2]);
        assert_eq!(super::components(0, []), Vec::<usize>::new());
    }
}
