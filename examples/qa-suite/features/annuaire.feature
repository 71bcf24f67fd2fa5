# language: fr
Fonctionnalité: Recherche d'un correspondant dans l'annuaire santé

  @exigence=SC.MSS/CONF.20 @exigence=SC.MSS/UX.41
  Scénario: Deux homonymes sont distingués par leur adresse MSSanté
    Étant donné le banc segur-bench
    Quand le LGC cherche "MARTIN" "SOPHIE" dans l'annuaire
    Alors il trouve 2 correspondants au moins, chacun avec son adresse MSSanté
    Et l'annuaire a reçu 1 recherche de ce scénario
