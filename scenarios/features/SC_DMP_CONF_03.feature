# language: fr
@exigence=SC.DMP/CONF.03
Fonctionnalité: SC.DMP/CONF.03 — Suppression d'un document du DMP par son auteur
  En cas d'erreur d'alimentation ou à la demande du patient, le médecin supprime du DMP le document qu'il y a
  envoyé (ITI-57 : statut Approved → Deleted). Le DMP seul juge de l'auteur : la suppression du document d'un
  confrère part, le DMP la refuse et le LGC affiche ce refus.

  Contexte:
    Étant donné le médecin "899700366240" connecté avec Pro Santé Connect
    Et l'identité de "BOUCHER" est qualifiée par l'Appli carte Vitale "167100093480710"
    Quand le médecin enregistre le consentement du patient
    Alors l'autorisation d'accès au DMP est posée

  Scénario: Supprimer du DMP son ordonnance, pas le document d'un confrère
    Quand le médecin rédige une ordonnance de produits de santé
    Et le médecin valide l'ordonnance
    Alors l'ordonnance est envoyée au DMP
    Quand le médecin tente de supprimer du DMP le document "Compte rendu d'examens biologiques" d'un confrère
    Alors le DMP refuse la suppression au non-auteur et le LGC affiche ce refus
    Quand le médecin supprime l'ordonnance du DMP
    Alors le DMP a supprimé l'ordonnance à la demande de son auteur (ITI-57 d'Approved à Deleted)
    Et le LGC ne liste plus l'ordonnance parmi les documents du DMP
